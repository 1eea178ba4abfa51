#include "common/gpu.h"

#include <dlfcn.h>
#include <fmt/format.h>

#include <cctype>
#include <cmath>

#include "common/units.h"

namespace hylab {

namespace {

// The few NVML entry points hylab uses, with their C signatures (nvml.h).
using NvmlReturn = int;
using NvmlDevice = void*;
struct NvmlMemory {
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};

struct Nvml {
  void* lib = nullptr;
  NvmlReturn (*init)() = nullptr;
  NvmlReturn (*shutdown)() = nullptr;
  NvmlReturn (*count)(unsigned int*) = nullptr;
  NvmlReturn (*handle)(unsigned int, NvmlDevice*) = nullptr;
  NvmlReturn (*name)(NvmlDevice, char*, unsigned int) = nullptr;
  NvmlReturn (*uuid)(NvmlDevice, char*, unsigned int) = nullptr;
  NvmlReturn (*memory)(NvmlDevice, NvmlMemory*) = nullptr;
  NvmlReturn (*driver)(char*, unsigned int) = nullptr;
  const char* (*error)(NvmlReturn) = nullptr;

  ~Nvml() {
    if (lib) dlclose(lib);
  }
  std::string err(NvmlReturn r) const { return error ? error(r) : fmt::format("NVML error {}", r); }
};

template <class F>
bool load(void* lib, const char* sym, F& f) {
  f = reinterpret_cast<F>(dlsym(lib, sym));
  return f != nullptr;
}

// Upper-case words of a GPU name without vendor words: "NVIDIA GeForce RTX 4090" -> RTX, 4090.
std::vector<std::string> words(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s + " ") {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      cur += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    } else if (!cur.empty()) {
      if (cur != "NVIDIA" && cur != "GEFORCE" && cur != "TESLA" && cur != "QUADRO")
        out.push_back(cur);
      cur.clear();
    }
  }
  return out;
}

std::string concat(const std::vector<std::string>& w) {
  std::string out;
  for (const auto& x : w) out += x;
  return out;
}

}  // namespace

std::string catalog_model_for(const std::string& nvml_name, std::uint64_t memory_bytes,
                              const Catalog& catalog) {
  // "NVIDIA A100-SXM4-80GB" -> "A100SXM480GB"; a catalog name matches by its stem (the
  // part before any "-": A100 for A100-80GB) unless the stem ends inside a number (L4 is
  // not L40S; "H100 80GB" is H100); among matches the longest stem wins, then the
  // closest memory size.
  std::vector<std::string> w = words(nvml_name);
  std::string n = concat(w);
  std::vector<bool> word_end(n.size() + 1, false);
  std::size_t at = 0;
  for (const auto& x : w) word_end[at += x.size()] = true;
  const GpuModel* best = nullptr;
  std::size_t best_len = 0;
  double best_gap = 0;
  for (const auto& g : catalog.gpus) {
    std::vector<std::string> names{g.name};
    names.insert(names.end(), g.aliases.begin(), g.aliases.end());
    for (const auto& candidate : names) {
      std::string stem = concat(words(candidate.substr(0, candidate.find('-'))));
      if (stem.empty() || n.rfind(stem, 0) != 0) continue;
      bool inside_number = n.size() > stem.size() && !word_end[stem.size()] &&
                           std::isdigit(static_cast<unsigned char>(n[stem.size()])) &&
                           std::isdigit(static_cast<unsigned char>(stem.back()));
      if (inside_number) continue;
      double gap =
          std::fabs(static_cast<double>(g.memory_bytes) - static_cast<double>(memory_bytes));
      if (!best || stem.size() > best_len || (stem.size() == best_len && gap < best_gap)) {
        best = &g;
        best_len = stem.size();
        best_gap = gap;
      }
    }
  }
  return best ? best->name : nvml_name;
}

GpuDiscovery discover_gpus(const Catalog& catalog) {
  GpuDiscovery out;
  Nvml nv;
  nv.lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!nv.lib) {
    out.detail = "libnvidia-ml.so.1 not found (no NVIDIA driver)";
    return out;
  }
  if (!load(nv.lib, "nvmlInit_v2", nv.init) || !load(nv.lib, "nvmlShutdown", nv.shutdown) ||
      !load(nv.lib, "nvmlDeviceGetCount_v2", nv.count) ||
      !load(nv.lib, "nvmlDeviceGetHandleByIndex_v2", nv.handle) ||
      !load(nv.lib, "nvmlDeviceGetName", nv.name) || !load(nv.lib, "nvmlDeviceGetUUID", nv.uuid) ||
      !load(nv.lib, "nvmlDeviceGetMemoryInfo", nv.memory)) {
    out.detail = "libnvidia-ml.so.1 lacks the NVML functions hylab needs";
    return out;
  }
  load(nv.lib, "nvmlErrorString", nv.error);
  load(nv.lib, "nvmlSystemGetDriverVersion", nv.driver);
  if (NvmlReturn r = nv.init(); r != 0) {
    out.detail = "NVML did not initialise: " + nv.err(r);
    return out;
  }
  unsigned int n = 0;
  if (NvmlReturn r = nv.count(&n); r != 0) {
    out.detail = "NVML device count failed: " + nv.err(r);
    nv.shutdown();
    return out;
  }
  for (unsigned int i = 0; i < n; ++i) {
    NvmlDevice dev = nullptr;
    if (nv.handle(i, &dev) != 0) continue;
    char name[96] = {};
    char uuid[96] = {};
    NvmlMemory mem{};
    nv.name(dev, name, sizeof name);
    nv.uuid(dev, uuid, sizeof uuid);
    nv.memory(dev, &mem);
    GpuDevice g;
    g.index = static_cast<int>(i);
    g.name = name;
    g.uuid = uuid;
    g.memory_bytes = mem.total;
    g.model = catalog_model_for(g.name, g.memory_bytes, catalog);
    out.gpus.push_back(std::move(g));
  }
  char version[96] = {};
  if (nv.driver) nv.driver(version, sizeof version);
  out.nvml = true;
  out.detail = fmt::format("NVML, driver {}", version[0] ? version : "unknown");
  nv.shutdown();
  return out;
}

}  // namespace hylab
