#include "common/catalog.h"

#include <fmt/format.h>

#include <stdexcept>

#include "common/catalog_yaml.h"
#include "common/text.h"
#include "common/units.h"

namespace hylab {

namespace embedded {
extern const std::string_view kCatalogYaml;
}

const GpuModel* Catalog::find_gpu(std::string_view name) const {
  for (const auto& g : gpus) {
    if (iequals(g.name, name)) return &g;
    for (const auto& a : g.aliases) {
      if (iequals(a, name)) return &g;
    }
  }
  return nullptr;
}

const Instance* Catalog::find_instance(std::string_view name) const {
  for (const auto& i : instances) {
    if (iequals(i.name, name)) return &i;
  }
  return nullptr;
}

std::vector<std::string> Catalog::gpu_names() const {
  std::vector<std::string> out;
  for (const auto& g : gpus) {
    out.push_back(g.name);
    out.insert(out.end(), g.aliases.begin(), g.aliases.end());
  }
  return out;
}

std::vector<std::string> Catalog::instance_names() const {
  std::vector<std::string> out;
  for (const auto& i : instances) out.push_back(i.name);
  return out;
}

namespace {

void read_gpu(const yaml::Where& w, const YAML::Node& node, const std::string& path, Catalog& c,
              bool overrides) {
  yaml::MapReader m(w, node, path);
  if (!m.ok()) return;
  auto name = m.string("name");
  auto aliases = m.string_list("aliases");
  auto memory = m.bytes("memory", kGB);
  auto tflops = m.number("tflops", 0, true);
  auto price = m.number("price_usd", 0);
  auto watts = m.number("watts", 0, true);
  auto kind = m.choice("kind", {"gpu", "tpu", "inferentia", "trainium"});
  m.finish();
  if (!name) {
    yaml::error_at(w, node, path + ".name", "missing: every GPU model needs a name");
    return;
  }
  GpuModel* g = nullptr;
  for (auto& existing : c.gpus) {
    if (iequals(existing.name, *name)) g = &existing;
  }
  if (!g) {
    if (!memory || !tflops) {
      yaml::error_at(
          w, node, path,
          fmt::format("GPU model '{}' is not in the catalog: give its memory and tflops", *name));
      return;
    }
    c.gpus.push_back(GpuModel{*name, {}, 0, 0, std::nullopt, std::nullopt, "gpu"});
    g = &c.gpus.back();
  } else if (!overrides) {
    yaml::error_at(w, node, path + ".name", fmt::format("GPU model '{}' is listed twice", *name));
    return;
  }
  if (aliases) g->aliases = *aliases;
  if (memory) g->memory_bytes = *memory;
  if (tflops) g->tflops = *tflops;
  if (price) g->price_usd = *price;
  if (watts) g->watts = *watts;
  if (kind) g->kind = *kind;
}

void read_instance(const yaml::Where& w, const YAML::Node& node, const std::string& path,
                   Catalog& c, bool overrides) {
  yaml::MapReader m(w, node, path);
  if (!m.ok()) return;
  auto provider = m.string("provider");
  auto name = m.string("name");
  auto region = m.string("region");
  auto gpu_node = m.take("gpu");
  auto gpu_count = m.integer("gpu_count", 0);
  auto vcpus = m.integer("vcpus", 1);
  auto memory = m.bytes("memory", kGiB);
  auto usd = m.number("usd_per_hour", 0);
  auto spot = m.number("spot_usd_per_hour", 0);
  auto source = m.string("source");
  auto date = m.string("date");
  m.finish();
  if (!name) {
    yaml::error_at(w, node, path + ".name", "missing: every instance needs a name");
    return;
  }
  std::optional<std::string> gpu;
  if (gpu_node && !gpu_node->IsNull()) {
    auto raw = yaml::as_string(w, *gpu_node, path + ".gpu");
    if (!raw) return;
    const GpuModel* model = c.find_gpu(*raw);
    if (!model) {
      std::string msg = fmt::format("unknown GPU model {}", quote(*raw));
      if (auto near = did_you_mean(*raw, c.gpu_names()))
        msg += fmt::format(" (did you mean '{}'?)", *near);
      yaml::error_at(w, *gpu_node, path + ".gpu", msg);
      return;
    }
    gpu = model->name;
  }
  Instance* inst = nullptr;
  for (auto& existing : c.instances) {
    if (iequals(existing.name, *name)) inst = &existing;
  }
  if (!inst) {
    std::vector<std::string> missing;
    if (!provider) missing.emplace_back("provider");
    if (!vcpus) missing.emplace_back("vcpus");
    if (!memory) missing.emplace_back("memory");
    if (!usd) missing.emplace_back("usd_per_hour");
    if (gpu && !gpu_count) missing.emplace_back("gpu_count");
    if (!missing.empty()) {
      yaml::error_at(
          w, node, path,
          fmt::format("instance '{}' is not in the catalog: give {}", *name, join(missing, ", ")));
      return;
    }
    c.instances.push_back(Instance{});
    inst = &c.instances.back();
    inst->name = *name;
  } else if (!overrides) {
    yaml::error_at(w, node, path + ".name", fmt::format("instance '{}' is listed twice", *name));
    return;
  }
  if (provider) inst->provider = *provider;
  if (region) inst->region = *region;
  if (gpu) inst->gpu = *gpu;
  if (gpu_count) inst->gpu_count = static_cast<int>(*gpu_count);
  if (vcpus) inst->vcpus = static_cast<int>(*vcpus);
  if (memory) inst->memory_bytes = *memory;
  if (usd) {
    inst->usd_per_hour = *usd;
    if (!spot) inst->spot_price_listed = false;
  }
  if (spot) {
    inst->spot_usd_per_hour = *spot;
    inst->spot_price_listed = true;
  }
  if (source) inst->source = *source;
  if (date) inst->date = *date;
  if (inst->gpu.empty() != (inst->gpu_count == 0)) {
    yaml::error_at(w, node, path,
                   fmt::format("instance '{}': give both gpu and gpu_count, or neither", *name));
  }
}

}  // namespace

void read_catalog(const yaml::Where& w, const YAML::Node& node, const std::string& path,
                  Catalog& into, bool overrides) {
  yaml::MapReader m(w, node, path);
  if (!m.ok()) return;
  if (auto d = m.number("spot_discount", 0)) {
    if (*d >= 1) {
      yaml::error_at(
          w, *m.take("spot_discount"), m.key_path("spot_discount"),
          fmt::format("must be below 1 (a fraction of the on-demand price), got {:g}", *d));
    } else {
      into.spot_discount = *d;
    }
  }
  if (auto gpus = m.take("gpus")) {
    yaml::for_each_item(
        w, *gpus, m.key_path("gpus"), "GPU models",
        [&](const YAML::Node& g, const std::string& p) { read_gpu(w, g, p, into, overrides); });
  }
  if (auto insts = m.take("instances")) {
    yaml::for_each_item(w, *insts, m.key_path("instances"), "instance types",
                        [&](const YAML::Node& n, const std::string& p) {
                          read_instance(w, n, p, into, overrides);
                        });
  }
  m.finish();
  for (auto& inst : into.instances) {
    if (!inst.spot_price_listed)
      inst.spot_usd_per_hour = inst.usd_per_hour * (1 - into.spot_discount);
  }
}

const Catalog& builtin_catalog() {
  static const Catalog catalog = [] {
    const std::string file = "data/catalog.yaml (built in)";
    Diagnostics diag;
    Catalog c;
    auto doc = yaml::parse(embedded::kCatalogYaml, file, diag);
    if (doc) read_catalog(yaml::Where{file, diag}, *doc, "", c, false);
    if (diag.has_errors()) throw std::runtime_error("invalid built-in catalog:\n" + diag.str());
    return c;
  }();
  return catalog;
}

}  // namespace hylab
