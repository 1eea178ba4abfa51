// Placement decisions per second: decide() over the shipped examples against the
// example lab, and the cost of loading a job spec (YAML parse + validation).
#include <benchmark/benchmark.h>

#include <filesystem>
#include <vector>

#include "common/config.h"
#include "common/job_spec.h"
#include "placement/engine.h"

namespace {

struct Fixture {
  hylab::Config cfg;
  std::vector<hylab::JobSpec> specs;
  std::vector<std::string> texts;
};

const Fixture& fixture() {
  static const Fixture f = [] {
    Fixture fx;
    hylab::Diagnostics d;
    fx.cfg = *hylab::load_config_file(HYLAB_SOURCE_DIR "/examples/hylab.yaml", d);
    for (const auto& e : std::filesystem::directory_iterator(HYLAB_SOURCE_DIR "/examples/jobs")) {
      fx.texts.push_back(*hylab::read_text_file(e.path().string(), 1 << 20));
      fx.specs.push_back(*hylab::load_job_spec_file(e.path().string(), fx.cfg.catalog, d));
    }
    return fx;
  }();
  return f;
}

void BM_Decide(benchmark::State& state) {
  const Fixture& f = fixture();
  std::size_t i = 0;
  for (auto _ : state) {
    auto d = hylab::placement::decide(f.specs[i++ % f.specs.size()], f.cfg);
    benchmark::DoNotOptimize(d);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_Decide);

void BM_LoadSpecAndDecide(benchmark::State& state) {
  const Fixture& f = fixture();
  std::size_t i = 0;
  for (auto _ : state) {
    hylab::Diagnostics d;
    auto spec =
        hylab::load_job_spec_text(f.texts[i++ % f.texts.size()], "bench.yaml", f.cfg.catalog, d);
    auto decision = hylab::placement::decide(*spec, f.cfg);
    benchmark::DoNotOptimize(decision);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_LoadSpecAndDecide);

}  // namespace

BENCHMARK_MAIN();
