// libFuzzer target over the config and job-spec (pipeline) loaders: any byte string must load or
// be refused with diagnostics; never crash, hang or trip a sanitizer. The first byte
// picks the loader so one corpus serves both.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/config.h"
#include "common/job_spec.h"
#include "placement/engine.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  hylab::Diagnostics diag;
  if (data[0] & 1) {
    auto cfg = hylab::load_config_text(text, "fuzz.yaml", diag);
    if (cfg) {
      // A config that loads must also drive a placement without trouble.
      hylab::JobSpec spec;
      spec.name = "probe";
      spec.accelerators.push_back({"RTX4090", 1});
      spec.hours = 2;
      (void)hylab::placement::decide(spec, *cfg);
    }
  } else {
    static const hylab::Config cfg = [] {
      hylab::Diagnostics d;
      return *hylab::load_config_text(
          "lab: {gpus: [{model: RTX4090, count: 2}], cpus: 32, memory: 128GiB, disk: 4TB}",
          "lab.yaml", d);
    }();
    auto pipeline = hylab::load_pipeline_text(text, "fuzz.yaml", cfg.catalog, diag);
    if (pipeline) {
      for (const auto& spec : pipeline->jobs) (void)hylab::placement::decide(spec, cfg);
    }
  }
  (void)diag.str();
  return 0;
}
