#!/usr/bin/env bash
# Runs the benchmarks built by `make bench`: placement decisions per second (Google
# Benchmark), the control plane (bench/serve_bench.py), the gateway, storage and Slurm
# dispatch (bench/*/). See bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/bench/bench/placement_bench
[[ -x $bin ]] || { echo "error: $bin is missing: run 'make bench'" >&2; exit 1; }
"$bin" --benchmark_min_time=2 --benchmark_repetitions=3 --benchmark_report_aggregates_only=true "$@"
echo
bench/serve_bench.py build/bench/src/cli/hylab
echo
bench/gateway/run.sh build/bench/src/cli/hylab

echo
bench/storage/run.sh build/bench/src/cli/hylab

echo
bench/slurm/bench.py build/bench/src/cli/hylab

echo
bench/http/idle.py build/bench/src/cli/hylab
