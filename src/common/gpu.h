// GPU discovery through NVML, loaded at run time with dlopen("libnvidia-ml.so.1") so
// hylab builds and runs on machines without a GPU or driver. Thread-safe: each call
// initialises and shuts NVML down on its own.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/catalog.h"

namespace hylab {

struct GpuDevice {
  int index = 0;
  std::string uuid;
  std::string name;   // as NVML reports it: "NVIDIA GeForce RTX 4090"
  std::string model;  // catalog model ("RTX4090"), or the NVML name when the catalog lacks it
  std::uint64_t memory_bytes = 0;
};

struct GpuDiscovery {
  bool nvml = false;   // true: the list came from NVML
  std::string detail;  // why NVML is not used ("libnvidia-ml.so.1 not found"), or its version
  std::vector<GpuDevice> gpus;
};

// Asks NVML; on failure returns nvml = false with the reason and no GPUs.
GpuDiscovery discover_gpus(const Catalog& catalog);

// Maps an NVML device name to a catalog model: "NVIDIA A100-SXM4-80GB" with 80 GB -> A100-80GB.
std::string catalog_model_for(const std::string& nvml_name, std::uint64_t memory_bytes,
                              const Catalog& catalog);

}  // namespace hylab
