// The catalog: GPU models (memory, throughput, purchase price and power of the cards a
// lab buys) and cloud instance types with on-demand and spot prices, each with its
// source and date. The shipped catalog (data/catalog.yaml) is embedded in the binary;
// a lab config's `catalog:` section overrides or extends it. Values only: any thread
// may read a Catalog; nobody mutates one after loading.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hylab {

struct GpuModel {
  std::string name;                  // canonical, e.g. "A100-80GB"
  std::vector<std::string> aliases;  // also accepted, e.g. "A100-80G"
  std::uint64_t memory_bytes = 0;
  double tflops = 0;                // dense FP16/BF16 tensor throughput, for relative speed
  std::optional<double> price_usd;  // street price of one card, for break-even
  std::optional<double> watts;      // board power at full load
  // "gpu", or an accelerator that is not one ("tpu", "inferentia", "trainium"): those are
  // cloud-only, never matched to a lab's cards or priced as a GPU's substitute.
  std::string kind = "gpu";

  bool cloud_only() const { return kind != "gpu"; }
};

struct Instance {
  std::string provider;  // aws, gcp, azure, ...
  std::string name;      // p4d.24xlarge
  std::string region;
  std::string gpu;  // canonical GPU model name, empty for CPU-only instances
  int gpu_count = 0;
  int vcpus = 0;
  std::uint64_t memory_bytes = 0;
  double usd_per_hour = 0;         // on-demand
  double spot_usd_per_hour = 0;    // spot (from the entry, or on-demand x (1 - spot_discount))
  bool spot_price_listed = false;  // false: spot price derived from the discount
  std::string source;
  std::string date;
};

struct Catalog {
  double spot_discount = 0.70;  // the guide's "70% cost savings" unless an entry says otherwise
  std::vector<GpuModel> gpus;
  std::vector<Instance> instances;

  // Case-insensitive match on the name or an alias.
  const GpuModel* find_gpu(std::string_view name) const;
  const Instance* find_instance(std::string_view name) const;
  std::vector<std::string> gpu_names() const;  // canonical names and aliases
  std::vector<std::string> instance_names() const;
};

// The catalog shipped in the binary. Throws std::runtime_error if the embedded file is
// invalid (a build error, caught by the tests).
const Catalog& builtin_catalog();

}  // namespace hylab
