# The two commands of the README. Both install what is missing first.
#   make run   build the release preset and run the main job
#   make test  build the sanitizer preset, run every test and the fuzzer
.PHONY: run test build deps deps-test bench fuzz lint tidy clean

FUZZ_SECONDS ?= 60
HYLAB_CONFIG_FILE ?= examples/hylab.yaml

run: deps
	cmake --preset release
	cmake --build --preset release
	./build/release/src/cli/hylab --config $(HYLAB_CONFIG_FILE) place examples/jobs/*.yaml
	exec ./build/release/src/cli/hylab --config $(HYLAB_CONFIG_FILE) serve

build: deps
	cmake --preset release
	cmake --build --preset release

deps:
	scripts/install-deps.sh build

deps-test:
	scripts/install-deps.sh test

test: deps-test lint
	cmake --preset debug
	cmake --build --preset debug
	ctest --preset debug
	$(MAKE) fuzz

fuzz: deps-test
	cmake --preset fuzz
	cmake --build --preset fuzz
	FUZZ_SECONDS=$(FUZZ_SECONDS) ctest --preset fuzz

bench:
	scripts/install-deps.sh bench
	cmake --preset bench
	cmake --build --preset bench
	bench/run.sh

# Formatting is checked on every test run; clang-tidy (slow on 2 cores) on demand.
lint:
	clang-format --dry-run -Werror $$(git ls-files '*.cpp' '*.h')

tidy: deps-test
	cmake --preset debug
	clang-tidy -p build/debug --quiet $$(git ls-files 'src/*.cpp')

clean:
	rm -rf build
