// Helpers for unit tests: build configs and specs from YAML text, failing the test with
// the diagnostics when they do not load.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "common/config.h"
#include "common/job_spec.h"

namespace hylab::testing {

// A lab of two RTX4090s (24 GB each), 32 CPUs, 128 GiB, 4 TB, $5,200, 1,100 W busy.
inline constexpr const char* kTwoGpuLab = R"(
lab:
  gpus: [{model: RTX4090, count: 2}]
  cpus: 32
  memory: 128GiB
  disk: 4TB
  hardware_usd: 5200
  service_life_months: 36
  power: {busy_watts: 1100, idle_watts: 120}
  electricity_usd_per_kwh: 0.15
)";

inline Config config_from(const std::string& yaml) {
  Diagnostics d;
  auto cfg = load_config_text(yaml, "test-lab.yaml", d);
  EXPECT_TRUE(cfg.has_value()) << d.str();
  return cfg ? *cfg : Config{};
}

inline JobSpec spec_from(const std::string& yaml, const Config& cfg = Config{}) {
  Diagnostics d;
  auto spec = load_job_spec_text(yaml, "job.yaml", cfg.catalog, d);
  EXPECT_TRUE(spec.has_value()) << d.str();
  EXPECT_FALSE(d.has_errors()) << d.str();
  return spec ? *spec : JobSpec{};
}

// Loads a spec expected to load; returns its warnings, one per line.
inline std::string spec_warnings(const std::string& yaml) {
  Diagnostics d;
  auto spec = load_job_spec_text(yaml, "job.yaml", builtin_catalog(), d);
  EXPECT_TRUE(spec.has_value()) << d.str();
  return d.str();
}

// Loads a spec expected to fail; returns every diagnostic, one per line.
inline std::string spec_errors(const std::string& yaml, const std::string& file = "job.yaml") {
  Diagnostics d;
  auto spec = load_job_spec_text(yaml, file, builtin_catalog(), d);
  EXPECT_FALSE(spec.has_value()) << "loaded although it should not";
  return d.str();
}

}  // namespace hylab::testing
