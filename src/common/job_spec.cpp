#include "common/job_spec.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <set>
#include <utility>
#include <vector>

#include "common/config.h"
#include "common/dstack_spec.h"
#include "common/text.h"
#include "common/units.h"
#include "common/yaml_reader.h"

namespace hylab {

std::string_view to_string(Category c) {
  switch (c) {
    case Category::kDevelopment:
      return "development";
    case Category::kTraining:
      return "training";
    case Category::kInference:
      return "inference";
    case Category::kDataProcessing:
      return "data-processing";
  }
  return "?";
}

std::string_view to_string(Sensitivity s) {
  switch (s) {
    case Sensitivity::kPublic:
      return "public";
    case Sensitivity::kInternal:
      return "internal";
    case Sensitivity::kSensitive:
      return "sensitive";
    case Sensitivity::kRegulated:
      return "regulated";
  }
  return "?";
}

std::string_view to_string(Pattern p) {
  switch (p) {
    case Pattern::kOneTime:
      return "one-time";
    case Pattern::kRecurring:
      return "recurring";
    case Pattern::kContinuous:
      return "continuous";
  }
  return "?";
}

std::string_view to_string(Reach r) { return r == Reach::kGlobal ? "global" : "regional"; }

std::string to_string(const Pin& p) { return p.region ? p.provider + "/" + *p.region : p.provider; }

std::string to_string(const AcceleratorRequest& a) {
  std::string out = a.any_model() ? fmt::format("{} GPUs of any model", a.count)
                                  : fmt::format("{}:{}", a.model, a.count);
  if (a.pin) out += " on " + to_string(*a.pin);
  return out;
}

namespace {

// The letters before a model's number, and the rest ("RTX4090" -> "RTX", "4090").
std::pair<std::string, std::string> model_parts(std::string_view name) {
  std::string norm;
  for (char c : name) {
    if (std::isalnum(static_cast<unsigned char>(c)))
      norm += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  std::size_t digit = 0;
  while (digit < norm.size() && !std::isdigit(static_cast<unsigned char>(norm[digit]))) ++digit;
  return {norm.substr(0, digit), norm.substr(digit)};
}

// Whether two letter runs are one typo apart: a substitution, an insertion, a deletion or
// two neighbours swapped.
bool one_typo_apart(const std::string& a, const std::string& b) {
  if (a == b) return true;
  if (a.size() == b.size()) {
    std::vector<std::size_t> diff;
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (a[i] != b[i]) diff.push_back(i);
    }
    if (diff.size() == 1) return true;
    return diff.size() == 2 && diff[1] == diff[0] + 1 && a[diff[0]] == b[diff[1]] &&
           a[diff[1]] == b[diff[0]];
  }
  const std::string& longer = a.size() > b.size() ? a : b;
  const std::string& shorter = a.size() > b.size() ? b : a;
  if (longer.size() != shorter.size() + 1) return false;
  for (std::size_t i = 0; i < longer.size(); ++i) {
    if (longer.substr(0, i) + longer.substr(i + 1) == shorter) return true;
  }
  return false;
}

// "did you mean" only for another spelling of the same model: the same number and suffix
// ("4090", "10G"), and the same letters but for case, separators, or one typo in a run of
// three or more ("rtx-4090", "RXT4090"). Never a different GPU: A10 is not A10G, L40 is not
// L40S, A1000 is not A100, B200 is not H200.
std::optional<std::string> same_model_spelling(std::string_view model, const Catalog& catalog) {
  auto [letters, rest] = model_parts(model);
  for (const auto& name : catalog.gpu_names()) {
    auto [l, r] = model_parts(name);
    if (r != rest) continue;
    if (l == letters || (l.size() >= 3 && one_typo_apart(l, letters))) return name;
  }
  return std::nullopt;
}

// One accelerator request, or why not. A model the catalog does not know is not reported
// here (`unknown` says why): among alternatives it is dropped with a warning, alone it is
// an error. Other errors are reported at once.
struct ParsedAccelerator {
  std::optional<AcceleratorRequest> request;
  std::string unknown;
};

ParsedAccelerator parse_accelerator(const yaml::Where& w, const YAML::Node& at,
                                    const std::string& key, std::string_view model,
                                    std::optional<std::string_view> count_text,
                                    const Catalog& catalog) {
  std::string model_s = trim(model);
  const GpuModel* gpu = model_s.empty() ? nullptr : catalog.find_gpu(model_s);
  if (!gpu && !model_s.empty()) {
    std::string msg = fmt::format("unknown GPU model {}", quote(model_s));
    if (auto near = same_model_spelling(model_s, catalog)) {
      msg += fmt::format(" (did you mean '{}'?)", *near);
    } else {
      msg += "; the catalog knows " + join(catalog.gpu_names(), ", ");
    }
    return {std::nullopt, msg};
  }
  int count = 1;
  if (count_text) {
    std::string c = trim(*count_text);
    auto n = parse_number(c);
    if (!n && !c.empty() && c.front() == '-') {
      yaml::error_at(w, at, key, fmt::format("GPU count must be at least 1, got {}", c));
      return {};
    }
    if (!n) {
      yaml::error_at(w, at, key, fmt::format("GPU count must be a whole number, got {}", quote(c)));
      return {};
    }
    if (*n != std::trunc(*n)) {  // (not a cast: a count past long long's range is no integer)
      yaml::error_at(
          w, at, key,
          fmt::format("fractional GPU count {} is not supported: ask for whole GPUs", c));
      return {};
    }
    if (*n < 1) {
      yaml::error_at(w, at, key, fmt::format("GPU count must be at least 1, got {}", c));
      return {};
    }
    if (*n > 4096) {
      yaml::error_at(w, at, key, fmt::format("GPU count {} is over the limit of 4096 per node", c));
      return {};
    }
    count = static_cast<int>(*n);
  }
  AcceleratorRequest r;
  r.model = gpu ? gpu->name : "";
  r.count = count;
  return {r, {}};
}

// "A100:8" or "A100" (count 1).
ParsedAccelerator parse_accelerator_text(const yaml::Where& w, const YAML::Node& at,
                                         const std::string& key, std::string_view text,
                                         const Catalog& catalog) {
  auto colon = text.find(':');
  if (colon == std::string_view::npos) {
    std::string t = trim(text);
    // "accelerators: 4": four GPUs of any model.
    if (!t.empty() && (std::isdigit(static_cast<unsigned char>(t.front())) || t.front() == '-'))
      return parse_accelerator(w, at, key, "", t, catalog);
    return parse_accelerator(w, at, key, text, std::nullopt, catalog);
  }
  return parse_accelerator(w, at, key, text.substr(0, colon), text.substr(colon + 1), catalog);
}

// accelerators: "A100:8" | {A100: 8, V100: 8} | {H200:8, H100:8} | ["A100:8", "V100:8"].
// In SkyPilot's usual {H200:8, H100:8}, YAML reads each "H200:8" as a key without a value.
// Among several alternatives, one the catalog does not know is dropped with a warning that
// names it; the request is refused only when none is left.
// A list is in order of preference (`ordered` is set); a set or map is not.
bool read_accelerators(const yaml::Where& w, const YAML::Node& n, const std::string& key,
                       const Catalog& catalog, std::vector<AcceleratorRequest>& out,
                       bool& ordered) {
  bool ok = true;
  struct Unknown {
    YAML::Node at;
    std::string key;
    std::string message;
  };
  std::vector<Unknown> unknown;
  auto add = [&](const YAML::Node& at, const std::string& k, ParsedAccelerator a) {
    if (a.request) {
      out.push_back(*a.request);
    } else if (!a.unknown.empty()) {
      unknown.push_back({at, k, std::move(a.unknown)});
    } else {
      ok = false;
    }
  };
  if (n.IsNull()) return true;
  if (n.IsScalar()) {
    if (auto s = yaml::as_string(w, n, key)) {
      add(n, key, parse_accelerator_text(w, n, key, *s, catalog));
    } else {
      ok = false;
    }
  } else if (n.IsMap()) {
    for (const auto& kv : n) {
      auto model = yaml::as_string(w, kv.first, key);
      if (!model) {
        ok = false;
        continue;
      }
      std::string k = key + "." + *model;
      if (kv.second.IsNull()) {  // "A100" or "H200:8" as a key alone
        add(kv.first, k, parse_accelerator_text(w, kv.first, k, *model, catalog));
        continue;
      }
      auto count = yaml::as_string(w, kv.second, k);
      if (!count) {
        ok = false;
        continue;
      }
      add(kv.second, k, parse_accelerator(w, kv.second, k, *model, *count, catalog));
    }
  } else if (n.IsSequence()) {
    ordered = true;
    std::size_t i = 0;
    for (const auto& item : n) {
      std::string k = fmt::format("{}[{}]", key, i++);
      if (auto s = yaml::as_string(w, item, k)) {
        add(item, k, parse_accelerator_text(w, item, k, *s, catalog));
      } else {
        ok = false;
      }
    }
  } else {
    yaml::error_at(w, n, key, "expected a GPU request such as A100:8");
    return false;
  }
  bool left = !out.empty();
  for (auto& u : unknown) {
    if (left) {
      yaml::warning_at(w, u.at, u.key, u.message + ": this alternative is dropped");
    } else {
      yaml::error_at(w, u.at, u.key, u.message);
      ok = false;
    }
  }
  return ok;
}

// "4", 4, "4+": a positive amount with an optional "at least" marker.
std::optional<std::string> at_least_value(const yaml::Where& w, const YAML::Node& n,
                                          const std::string& key) {
  auto s = yaml::as_string(w, n, key);
  if (!s) return std::nullopt;
  std::string v = trim(*s);
  if (!v.empty() && v.back() == '+') v.pop_back();
  return v;
}

// What one resources mapping says about what the job runs on and where: the job's own
// resources, or one entry of any_of/ordered.
struct Candidate {
  std::vector<AcceleratorRequest> accelerators;
  bool accelerators_given = false;
  bool ordered = false;  // the accelerators were a list
  std::optional<Pin> pin;
  std::optional<bool> use_spot;
};

std::string provider_name(std::string_view cloud) {
  std::string p = to_lower(trim(cloud));
  return p == "k8s" ? "kubernetes" : p;
}

// infra: "aws", "aws/us-east-1", "aws/us-east-1/us-east-1a", "aws/*/us-east-1a", "k8s",
// "k8s/my-context", "*/us-east-1". The zone is not a constraint (a warning says so).
std::optional<Pin> parse_infra(const yaml::Where& w, const YAML::Node& at, const std::string& key,
                               const std::string& text) {
  std::vector<std::string> parts;
  std::size_t from = 0;
  while (true) {
    auto slash = text.find('/', from);
    parts.push_back(trim(text.substr(from, slash == std::string::npos ? slash : slash - from)));
    if (slash == std::string::npos) break;
    from = slash + 1;
  }
  bool kubernetes = provider_name(parts[0]) == "kubernetes";
  if (parts[0].empty() || parts.size() > (kubernetes ? 2U : 3U) ||
      std::any_of(parts.begin(), parts.end(), [](const auto& p) { return p.empty(); })) {
    yaml::error_at(w, at, key,
                   fmt::format("expected CLOUD, CLOUD/REGION or CLOUD/REGION/ZONE (such as aws, "
                               "aws/us-east-1, k8s/my-context), got {}",
                               quote(text)));
    return std::nullopt;
  }
  Pin pin{provider_name(parts[0]), std::nullopt};
  if (parts.size() > 1 && parts[1] != "*") pin.region = parts[1];
  if (pin.provider == "*" && !pin.region) return std::nullopt;  // "*" or "*/*": anywhere
  if (parts.size() == 3) {
    yaml::warning_at(w, at, key,
                     fmt::format("zone {}: not a constraint: the job may run in any zone{}",
                                 parts[2], pin.region ? " of " + *pin.region : ""));
  }
  return pin;
}

void warn_unpriced(const yaml::Where& w, const YAML::Node& at, const std::string& key,
                   const Pin& pin, const Catalog& catalog) {
  if (pin.provider == "*") return;
  bool known = false;
  for (const auto& i : catalog.instances) known = known || i.provider == pin.provider;
  if (!known) {
    yaml::warning_at(
        w, at, key,
        fmt::format("the catalog has no prices for cloud '{}'; its cost is unknown", pin.provider));
  }
}

// accelerators, cloud/infra/region/zone and use_spot, from the job's resources or an entry.
void read_candidate(const yaml::Where& w, yaml::MapReader& m, const Catalog& catalog,
                    Candidate& c) {
  // SkyPilot reads `gpus` as another name for `accelerators`.
  auto a = m.take("accelerators");
  auto gpus = m.take("gpus");
  if (a && gpus) {
    yaml::error_at(w, *gpus, m.key_path("gpus"),
                   "give accelerators or gpus, not both: gpus is another name for it");
  } else if (gpus) {
    a = gpus;
  }
  if (a && !a->IsNull()) {
    c.accelerators_given = true;
    read_accelerators(w, *a, m.key_path(gpus && a == gpus ? "gpus" : "accelerators"), catalog,
                      c.accelerators, c.ordered);
  }
  auto cloud_node = m.take("cloud");
  auto infra_node = m.take("infra");
  auto region_node = m.take("region");
  auto text = [&](const std::optional<YAML::Node>& n, std::string_view key) {
    return n && !n->IsNull() ? yaml::as_string(w, *n, m.key_path(key)) : std::nullopt;
  };
  auto cloud = text(cloud_node, "cloud");
  auto infra = text(infra_node, "infra");
  auto region = text(region_node, "region");
  if (infra && (cloud || region)) {
    yaml::error_at(w, *infra_node, m.key_path("infra"),
                   "give infra, or cloud and region, not both (infra: aws/us-east-1 says both)");
  } else if (infra) {
    c.pin = parse_infra(w, *infra_node, m.key_path("infra"), *infra);
    if (c.pin) warn_unpriced(w, *infra_node, m.key_path("infra"), *c.pin, catalog);
  } else if (cloud || region) {
    Pin pin{cloud ? provider_name(*cloud) : "*", std::nullopt};
    if (region) pin.region = trim(*region);
    c.pin = pin;
    if (cloud) warn_unpriced(w, *cloud_node, m.key_path("cloud"), pin, catalog);
  }
  c.use_spot = m.boolean("use_spot");
  m.accept_with_warning({{"zone", "not a constraint: the job may run in any zone"}});
}

// SkyPilot's memory: a bare number is GB, and its KB/MB/GB/TB/PB are binary (2^10 ...).
Result<std::uint64_t> skypilot_bytes(std::string v) {
  std::string lower = to_lower(v);
  for (const char* unit : {"kb", "mb", "gb", "tb", "pb"}) {
    if (lower.size() > 2 && lower.compare(lower.size() - 2, 2, unit) == 0) {
      v = v.substr(0, v.size() - 2) + static_cast<char>(std::toupper(unit[0])) + "iB";
      break;
    }
  }
  return parse_bytes(v, kGiB);
}

// "32", "32+", "64GB", "1024MB+": bytes per node; "8x": at least 8 GiB per vCPU.
struct MemoryAsk {
  std::optional<std::uint64_t> bytes;
  std::optional<double> per_cpu_gib;
};

MemoryAsk read_memory(const yaml::Where& w, const YAML::Node& mem, const std::string& key) {
  MemoryAsk out;
  auto v = at_least_value(w, mem, key);
  if (!v) return out;
  if (!v->empty() && (v->back() == 'x' || v->back() == 'X')) {
    auto ratio = parse_number(v->substr(0, v->size() - 1));
    if (!ratio || *ratio <= 0) {
      yaml::error_at(w, mem, key,
                     fmt::format("expected GiB per vCPU such as 8x, got {}", quote(mem.Scalar())));
    } else {
      out.per_cpu_gib = *ratio;
    }
    return out;
  }
  auto b = skypilot_bytes(*v);
  if (!b) {
    yaml::error_at(w, mem, key, b.error().message);
  } else if (*b == 0) {
    yaml::error_at(w, mem, key, "must be greater than 0");
  } else {
    out.bytes = *b;
  }
  return out;
}

// "8", 8, "8+": CPUs per node.
std::optional<double> read_cpus(const yaml::Where& w, const YAML::Node& c, const std::string& key) {
  auto v = at_least_value(w, c, key);
  if (!v) return std::nullopt;
  auto n = parse_number(*v);
  if (!n) {
    yaml::error_at(w, c, key,
                   "expected a number of CPUs such as 8 or 8+, got " + quote(c.Scalar()));
  } else if (*n <= 0) {
    yaml::error_at(w, c, key, "must be greater than 0");
  } else {
    return *n;
  }
  return std::nullopt;
}

// An entry's pin over the job's, field by field: {region: us-east1} under cloud: gcp is
// gcp/us-east1; a region stays only with its own provider.
std::optional<Pin> merged_pin(const std::optional<Pin>& entry, const std::optional<Pin>& job) {
  if (!entry) return job;
  if (!job) return entry;
  Pin p = *entry;
  if (p.provider == "*") p.provider = job->provider;
  if (!p.region && p.provider == job->provider) p.region = job->region;
  return p;
}

// any_of/ordered: each entry one alternative, its fields over the job's. Entries without
// accelerators take the job's; an entry's other keys (cpus, memory, ...) are not per
// alternative here, and say so.
void read_alternatives(const yaml::Where& w, const YAML::Node& list, const std::string& key,
                       const Catalog& catalog, const Candidate& base, JobSpec& spec) {
  if (!list.IsSequence()) {
    yaml::error_at(w, list, key, "expected a list of resources, one per alternative");
    return;
  }
  std::vector<Pin> cpu_pins;
  bool cpu_anywhere = false;
  std::size_t cpu_only = 0;
  std::size_t i = 0;
  for (const auto& entry : list) {
    std::string path = fmt::format("{}[{}]", key, i++);
    yaml::MapReader em(w, entry, path);
    if (!em.ok()) continue;
    Candidate c;
    read_candidate(w, em, catalog, c);
    std::optional<double> cpus;
    std::optional<std::uint64_t> memory;
    if (auto n = em.take("cpus"); n && !n->IsNull()) cpus = read_cpus(w, *n, path + ".cpus");
    if (auto n = em.take("memory"); n && !n->IsNull()) {
      MemoryAsk ask = read_memory(w, *n, path + ".memory");
      memory = ask.bytes;
      if (ask.per_cpu_gib) {
        yaml::warning_at(w, *n, path + ".memory",
                         "not acted on: GiB per vCPU is read for the job's resources.memory only");
      }
    }
    em.accept_with_warning({
        {"instance_type", "not read per alternative: the job's resources.instance_type counts"},
        {"disk_size", "not read per alternative: the job's resources.disk_size counts"},
        {"disk_tier", "the target's default disks are used"},
        {"network_tier", "the target's default network is used"},
        {"image_id", "the job runs in the host's environment, not in the image"},
        {"ports", "no port is opened or forwarded"},
        {"labels", "not applied to anything"},
        {"accelerator_args", "not passed to the accelerator's runtime"},
        {"job_recovery", "hylab's own recovery applies"},
        {"autostop", "no cluster is kept up to stop"},
    });
    em.finish();
    const auto& accels = c.accelerators_given ? c.accelerators : base.accelerators;
    std::optional<Pin> pin = merged_pin(c.pin, base.pin);
    if (accels.empty()) {
      if (cpus || memory) {
        yaml::warning_at(w, entry, path,
                         "cpus/memory of an alternative without accelerators are not read "
                         "per alternative: the job's count");
      }
      ++cpu_only;
      if (pin) {
        cpu_pins.push_back(*pin);
      } else {
        cpu_anywhere = true;
      }
      continue;
    }
    for (auto a : accels) {
      a.pin = pin;
      a.use_spot = c.use_spot ? c.use_spot : base.use_spot;
      a.cpus = cpus;
      a.memory_bytes = memory;
      a.origin = path;
      spec.accelerators.push_back(std::move(a));
    }
  }
  if (spec.accelerators.empty()) {  // CPU-only alternatives: any of their places
    if (!cpu_anywhere) spec.pins = cpu_pins;
  } else if (cpu_only > 0) {
    yaml::warning_at(w, list, key,
                     fmt::format("{} alternative(s) without accelerators among ones with GPUs are "
                                 "not considered: the job is placed as asking for a GPU",
                                 cpu_only));
  }
}

void read_resources(const yaml::Where& w, const YAML::Node& node, const Catalog& catalog,
                    JobSpec& spec) {
  yaml::MapReader m(w, node, "resources");
  if (!m.ok()) return;
  Candidate base;
  read_candidate(w, m, catalog, base);
  spec.use_spot = base.use_spot;
  if (base.pin) spec.pins = {*base.pin};
  auto any_of = m.take("any_of");
  auto ordered = m.take("ordered");
  if (any_of && ordered) {
    yaml::error_at(w, *ordered, "resources.ordered",
                   "give any_of or ordered, not both: they are two ways to list alternatives");
  } else if (any_of || ordered) {
    spec.ordered = ordered.has_value();
    read_alternatives(w, any_of ? *any_of : *ordered,
                      any_of ? "resources.any_of" : "resources.ordered", catalog, base, spec);
  } else {
    spec.accelerators = base.accelerators;
    spec.ordered = base.ordered;
  }
  if (auto c = m.take("cpus"); c && !c->IsNull()) spec.cpus = read_cpus(w, *c, "resources.cpus");
  if (auto mem = m.take("memory"); mem && !mem->IsNull()) {
    MemoryAsk ask = read_memory(w, *mem, "resources.memory");
    spec.memory_bytes = ask.bytes;
    spec.memory_per_cpu_gib = ask.per_cpu_gib;
  }
  if (auto it = m.take("instance_type"); it && !it->IsNull()) {
    if (auto s = yaml::as_string(w, *it, "resources.instance_type")) {
      if (const Instance* inst = catalog.find_instance(*s)) {
        spec.instance_type = inst->name;
      } else {
        // A near miss is a typo (an error); an instance the catalog does not price is
        // valid SkyPilot, matched by the rest of its resources instead.
        if (auto near = did_you_mean(*s, catalog.instance_names())) {
          yaml::error_at(
              w, *it, "resources.instance_type",
              fmt::format("unknown instance type {} (did you mean '{}'?)", quote(*s), *near));
        } else {
          yaml::warning_at(w, *it, "resources.instance_type",
                           fmt::format("the catalog does not price instance type {}: the job is "
                                       "matched by its other resources (add it under "
                                       "catalog.instances in hylab.yaml with its price)",
                                       quote(*s)));
        }
      }
    }
  }
  if (auto d = m.take("disk_size"); d && !d->IsNull()) {
    if (auto text = yaml::as_string(w, *d, "resources.disk_size")) {
      auto b = skypilot_bytes(trim(*text));
      if (!b) {
        yaml::error_at(w, *d, "resources.disk_size", b.error().message);
      } else if (*b == 0) {
        yaml::error_at(w, *d, "resources.disk_size", "must be greater than 0");
      } else {
        spec.disk_bytes = *b;
      }
    }
  }
  // SkyPilot keys hylab accepts but does not act on, each with what that means.
  m.accept_with_warning({
      {"ports", "no port is opened or forwarded: the job's ports are reachable only where it runs"},
      {"image_id", "the job runs in the host's environment, not in the image"},
      {"labels", "not applied to anything"},
      {"accelerator_args", "not passed to the accelerator's runtime"},
      {"job_recovery",
       "hylab's own recovery applies: a preempted spot job is requeued, and "
       "after policy.max_preemptions it moves to on-demand"},
      {"spot_recovery",
       "hylab's own recovery applies: a preempted spot job is requeued, and "
       "after policy.max_preemptions it moves to on-demand"},
      {"disk_tier", "the target's default disks are used"},
      {"network_tier", "the target's default network is used"},
      {"autostop", "no cluster is kept up to stop: jobs run on the lab and existing targets"},
      {"max_hourly_cost", "not a limit: policy.monthly_cloud_budget_usd is hylab's"},
  });
  m.finish();
}

// SkyServe's service: the job is an inference service. hylab runs one replica of it and
// serves it through the gateway; each service key is named with what that means.
void read_service(const yaml::Where& w, const YAML::Node& node, JobSpec& spec) {
  if (!node.IsMap()) {
    yaml::error_at(w, node, "service",
                   "expected a mapping such as {readiness_probe: /health, replicas: 1}, got " +
                       std::string(yaml::type_name(node)));
    return;
  }
  spec.service = true;
  static const std::vector<std::pair<std::string, std::string>> kMeanings = {
      {"replicas", "one replica runs: the gateway spreads load over its configured endpoints"},
      {"replica_policy", "no autoscaling: one replica runs"},
      {"readiness_probe", "not probed: the gateway's health checks decide where requests go"},
      {"ports", "not published: add the service as a gateway endpoint"},
      {"load_balancing_policy", "the gateway's routing applies"},
      {"tls", "not terminated here: the gateway's listener applies"},
  };
  std::set<std::string> warned;
  for (const auto& kv : node) {
    if (!kv.first.IsScalar()) continue;
    const std::string& key = kv.first.Scalar();
    if (!warned.insert(key).second) continue;
    std::string meaning = "not acted on";
    for (const auto& [k, v] : kMeanings) {
      if (k == key) meaning = v;
    }
    // Every SkyServe key is valid SkyPilot: none is refused, each is named.
    yaml::warning_at(w, kv.first, "service." + printable(key),
                     meaning == "not acted on" ? meaning : "not acted on: " + meaning);
  }
}

void read_data(const yaml::Where& w, const YAML::Node& node, JobSpec& spec) {
  yaml::MapReader m(w, node, "data");
  if (!m.ok()) return;
  if (auto s = m.choice("sensitivity", {"public", "internal", "sensitive", "regulated"})) {
    spec.sensitivity_given = true;
    if (*s == "public") spec.sensitivity = Sensitivity::kPublic;
    if (*s == "internal") spec.sensitivity = Sensitivity::kInternal;
    if (*s == "sensitive") spec.sensitivity = Sensitivity::kSensitive;
    if (*s == "regulated") spec.sensitivity = Sensitivity::kRegulated;
  }
  spec.data_bytes = m.bytes("size", kGB);
  if (auto v = m.string_list("inputs")) spec.data_inputs = *v;
  m.finish();
}

// Every string of a job spec is stored, listed, and handed to bash and the environment,
// so each must be text: valid UTF-8 without control characters. Scripts (run, setup, dstack's
// commands) and environment values may hold tabs and newlines; names, paths and keys are one
// line.
bool multiline_field(std::string_view path) {
  return path == "run" || path == "setup" || path.rfind("envs.", 0) == 0 ||
         path.rfind("commands[", 0) == 0 || path.rfind("env[", 0) == 0 ||  // dstack's
         path.rfind("env.", 0) == 0;
}

// The raw text first: yaml-cpp passes bytes that are not UTF-8 through untouched, and here
// the first one can be shown at its line and column.
bool check_utf8(std::string_view text, const std::string& file, Diagnostics& diag) {
  auto bad = first_invalid_utf8(text);
  if (!bad) return true;
  std::string_view before = text.substr(0, *bad);
  auto line = static_cast<int>(std::count(before.begin(), before.end(), '\n')) + 1;
  auto nl = before.rfind('\n');
  auto column =
      static_cast<int>(nl == std::string_view::npos ? before.size() + 1 : before.size() - nl);
  diag.error(file, line, column, "",
             fmt::format("byte 0x{:02x} is not valid UTF-8: a job spec must be UTF-8 text",
                         static_cast<unsigned char>(text[*bad])));
  return false;
}

// Then every parsed scalar, keys included: escapes in quoted strings ("\e", "\x9b") make
// characters the raw text does not show.
void check_strings(const yaml::Where& w, const YAML::Node& n, const std::string& path) {
  auto check = [&](const YAML::Node& at, const std::string& key, bool multiline) {
    if (auto fault = find_text_fault(at.Scalar(), multiline)) {
      yaml::error_at(w, at, key.empty() ? "(top level)" : key,
                     fmt::format("{} at byte {}: {}", fault->message, fault->offset,
                                 multiline ? "only tab and newline may appear in a script or "
                                             "an environment value"
                                           : "this value must be one line of text"));
    }
  };
  if (n.IsScalar()) {
    check(n, path, multiline_field(path));
  } else if (n.IsSequence()) {
    std::size_t i = 0;
    for (const auto& item : n) check_strings(w, item, fmt::format("{}[{}]", path, i++));
  } else if (n.IsMap()) {
    for (const auto& kv : n) {
      if (!kv.first.IsScalar()) continue;  // MapReader reports it
      // Escaped: the path is printed in the message, and this key may be the bad string.
      std::string name = printable(kv.first.Scalar());
      std::string key = path.empty() ? name : path + "." + name;
      check(kv.first, key, /*multiline=*/false);
      check_strings(w, kv.second, key);
    }
  }
}

std::string file_stem(const std::string& path) {
  auto slash = path.find_last_of('/');
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  auto dot = base.find_last_of('.');
  return dot == std::string::npos || dot == 0 ? base : base.substr(0, dot);
}

// The documents of a YAML stream, each with the line it starts on (0-based), split at
// "---" lines (a document marker at column 0 ends any block before it); "..." lines end a
// document. Documents of nothing but blanks and comments are left out.
struct Document {
  std::size_t first_line = 0;
  std::string text;
};

bool marker_line(std::string_view line, std::string_view marker) {
  return line.substr(0, 3) == marker && (line.size() == 3 || line[3] == ' ' || line[3] == '\t' ||
                                         line[3] == '\r' || line[3] == '\n');
}

bool blank_document(std::string_view text) {
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto nl = text.find('\n', pos);
    std::string line = trim(text.substr(pos, nl == std::string_view::npos ? nl : nl - pos));
    if (!line.empty() && line[0] != '#') return false;
    if (nl == std::string_view::npos) break;
    pos = nl + 1;
  }
  return true;
}

std::vector<Document> split_documents(std::string_view text) {
  std::vector<Document> docs;
  Document cur;
  std::size_t line_no = 0, pos = 0;
  auto flush = [&](std::size_t next_first) {
    if (!blank_document(cur.text)) docs.push_back(std::move(cur));
    cur = Document{next_first, {}};
  };
  while (pos < text.size()) {
    auto nl = text.find('\n', pos);
    std::string_view line =
        text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos + 1);
    if (marker_line(line, "---")) {
      flush(line_no);
      // "--- key: value" keeps what follows the marker, in its column.
      cur.text = std::string(3, ' ') + std::string(line.substr(3));
    } else if (marker_line(line, "...")) {
      flush(line_no + 1);
    } else {
      cur.text += line;
    }
    ++line_no;
    if (nl == std::string_view::npos) break;
    pos = nl + 1;
  }
  flush(line_no);
  return docs;
}

// A pipeline's header: a first document of nothing but `name: X`, or SkyPilot's job-group
// header (name with execution, primary_tasks, termination_delay).
bool is_header(const Document& d) {
  Diagnostics ignored;  // a document that does not parse is no header; loading it says why
  auto n = yaml::parse(d.text, "", ignored);  // (within the nesting and size limits)
  if (!n || !n->IsMap() || !(*n)["name"] || !(*n)["name"].IsScalar()) return false;
  for (const auto& kv : *n) {
    if (!kv.first.IsScalar()) return false;
    const std::string& k = kv.first.Scalar();
    if (k != "name" && k != "execution" && k != "primary_tasks" && k != "termination_delay")
      return false;
  }
  return true;
}

void read_header(const Document& d, const std::string& file, Diagnostics& diag, PipelineSpec& p) {
  std::string padded = std::string(d.first_line, '\n') + d.text;
  auto n = yaml::parse(padded, file, diag);
  if (!n) return;
  yaml::Where w{file, diag};
  yaml::MapReader m(w, *n, "");
  if (auto name = m.string("name")) p.name = trim(*name);
  if (auto e = m.choice("execution", {"serial", "parallel"})) p.parallel = *e == "parallel";
  m.accept_with_warning({
      {"primary_tasks",
       "every job of the group runs to its own end: the others are not stopped when these end"},
      {"termination_delay", "the others are not stopped, so there is nothing to delay"},
  });
  m.finish();
}

std::optional<JobSpec> load_one(std::string_view text, const std::string& file,
                                const Catalog& catalog, Diagnostics& diag);

}  // namespace

namespace detail {
bool read_accelerators(const yaml::Where& w, const YAML::Node& n, const std::string& key,
                       const Catalog& catalog, std::vector<AcceleratorRequest>& out,
                       bool& ordered) {
  return hylab::read_accelerators(w, n, key, catalog, out, ordered);
}
}  // namespace detail

std::optional<JobSpec> load_job_spec_text(std::string_view text, const std::string& file,
                                          const Catalog& catalog, Diagnostics& diag) {
  if (text.size() <= kMaxJobSpecBytes && split_documents(text).size() > 1) {
    diag.error(file, 0, 0, "",
               "the file holds several YAML documents: it is a pipeline, one job per document "
               "(hylab run and hylab place take it whole)");
    return std::nullopt;
  }
  return load_one(text, file, catalog, diag);
}

std::optional<PipelineSpec> load_pipeline_text(std::string_view text, const std::string& file,
                                               const Catalog& catalog, Diagnostics& diag) {
  if (text.size() > kMaxJobSpecBytes) {
    (void)load_one(text, file, catalog, diag);  // reports the limit
    return std::nullopt;
  }
  std::vector<Document> docs = split_documents(text);
  PipelineSpec p;
  p.name = file_stem(file);
  if (docs.size() <= 1) {  // one job (or an empty file, which load_one reports)
    auto spec = load_one(text, file, catalog, diag);
    if (!spec) return std::nullopt;
    p.name = spec->name;
    p.jobs.push_back(std::move(*spec));
    p.texts.emplace_back(text);
    return p;
  }
  if (is_header(docs.front())) {
    std::size_t errors = diag.error_count();
    read_header(docs.front(), file, diag, p);
    if (diag.error_count() > errors) return std::nullopt;
    p.header = true;
    docs.erase(docs.begin());
  }
  if (docs.size() > kMaxPipelineJobs) {
    diag.error(file, static_cast<int>(docs[kMaxPipelineJobs].first_line) + 1, 1, "",
               fmt::format("the pipeline has {} jobs, over the limit of {}", docs.size(),
                           kMaxPipelineJobs));
    return std::nullopt;
  }
  bool ok = true;
  for (std::size_t i = 0; i < docs.size(); ++i) {
    // Padded to its own lines, so every message names the line in the file.
    std::string padded = std::string(docs[i].first_line, '\n') + docs[i].text;
    auto spec = load_one(padded, file, catalog, diag);
    if (!spec) {
      ok = false;
      continue;
    }
    bool named = false;
    try {
      YAML::Node n = YAML::Load(docs[i].text);
      named = n.IsMap() && n["name"];
    } catch (const YAML::Exception&) {
    }
    if (!named) spec->name = fmt::format("{}-{}", p.name, i + 1);
    p.jobs.push_back(std::move(*spec));
    p.texts.push_back(docs[i].text);
  }
  if (!ok) return std::nullopt;
  return p;
}

std::optional<PipelineSpec> load_pipeline_file(const std::string& path, const Catalog& catalog,
                                               Diagnostics& diag) {
  auto text = read_text_file(path, kMaxJobSpecBytes);
  if (!text) {
    diag.error(path, 0, 0, "", text.error().message.substr(path.size() + 2));
    return std::nullopt;
  }
  return load_pipeline_text(*text, path, catalog, diag);
}

namespace {

std::optional<JobSpec> load_one(std::string_view text, const std::string& file,
                                const Catalog& catalog, Diagnostics& diag) {
  std::size_t errors_before = diag.error_count();
  if (text.size() > kMaxJobSpecBytes) {
    diag.error(file, 0, 0, "",
               fmt::format("job spec is {} bytes, over the limit of {} bytes", text.size(),
                           kMaxJobSpecBytes));
    return std::nullopt;
  }
  if (!check_utf8(text, file, diag)) return std::nullopt;
  auto doc = yaml::parse(text, file, diag);
  if (!doc) return std::nullopt;
  yaml::Where w{file, diag};
  check_strings(w, *doc, "");
  JobSpec spec;
  spec.file = file;
  yaml::MapReader top(w, *doc, "");
  if (!top.ok()) return std::nullopt;
  if (doc->IsNull()) {
    diag.error(file, 0, 0, "", "the job spec is empty: give at least a name and a run command");
    return std::nullopt;
  }
  if (detail::is_dstack(*doc)) {  // a dstack task or service: its forms that map cleanly
    spec.name = file_stem(file);
    detail::read_dstack(w, *doc, catalog, spec);
    if (diag.error_count() > errors_before) return std::nullopt;
    return spec;
  }

  spec.name = top.string("name").value_or(file_stem(file));
  if (auto wd = top.take("workdir"); wd && wd->IsMap()) {  // SkyPilot's {url, ref}: a git repo
    yaml::warning_at(w, *wd, "workdir",
                     "not acted on: a git repository (url, ref) is not cloned: the job runs in "
                     "its own folder; clone it in setup:");
  } else if (wd && !wd->IsNull()) {
    spec.workdir = yaml::as_string(w, *wd, "workdir");
  }
  if (auto n = top.integer("num_nodes", 1)) spec.num_nodes = static_cast<int>(*n);
  if (auto r = top.take("resources")) read_resources(w, *r, catalog, spec);
  if (auto e = top.take("envs")) {
    if (auto v = yaml::as_string_map(w, *e, "envs")) spec.envs = *v;
  }
  if (auto fm = top.take("file_mounts"); fm && !fm->IsNull()) {
    if (!fm->IsMap()) {
      yaml::error_at(w, *fm, "file_mounts", "expected a mapping of remote paths to sources");
    } else {
      for (const auto& kv : *fm) {
        auto target = yaml::as_string(w, kv.first, "file_mounts");
        if (!target) continue;
        if (kv.second.IsScalar()) {
          spec.file_mounts[*target] = kv.second.Scalar();
        } else if (kv.second.IsMap()) {
          spec.file_mounts[*target] = "(storage mount)";
        } else {
          yaml::error_at(w, kv.second, "file_mounts." + *target,
                         "expected a source path or a storage mapping, got " +
                             std::string(yaml::type_name(kv.second)));
        }
      }
    }
  }
  if (auto v = top.string("setup")) spec.setup = *v;
  if (auto v = top.string("run")) spec.run = *v;

  if (auto c =
          top.choice("category", {"development", "training", "inference", "data-processing"})) {
    spec.category_given = true;
    if (*c == "development") spec.category = Category::kDevelopment;
    if (*c == "training") spec.category = Category::kTraining;
    if (*c == "inference") spec.category = Category::kInference;
    if (*c == "data-processing") spec.category = Category::kDataProcessing;
  }
  if (auto d = top.take("data")) read_data(w, *d, spec);
  if (auto h = top.take("hours"); h && !h->IsNull()) {
    if (auto v = yaml::as_hours(w, *h, "hours")) {
      if (*v <= 0) {
        yaml::error_at(w, *h, "hours", "the estimated run time must be greater than 0");
      } else {
        spec.hours = *v;
      }
    }
  }
  if (auto p = top.choice("pattern", {"one-time", "recurring", "continuous"})) {
    spec.pattern_given = true;
    if (*p == "one-time") spec.pattern = Pattern::kOneTime;
    if (*p == "recurring") spec.pattern = Pattern::kRecurring;
    if (*p == "continuous") spec.pattern = Pattern::kContinuous;
  }
  if (auto r = top.choice("reach", {"regional", "global"})) {
    spec.reach = *r == "global" ? Reach::kGlobal : Reach::kRegional;
  }
  if (auto o = top.string_list("outputs")) spec.outputs = *o;
  if (auto sv = top.take("service"); sv && !sv->IsNull()) read_service(w, *sv, spec);
  top.accept_with_warning({
      {"secrets", "not passed to the job"},
      {"model", "SkyServe's model-only form: hylab runs what run: says, and nothing without it"},
      {"config", "SkyPilot's per-task configuration overrides do not apply"},
      {"volumes", "not mounted"},
      {"event_callback", "not run"},
      {"experimental", "ignored"},
  });
  top.finish();
  if (spec.service) {  // an inference service, 24/7, unless the file says otherwise
    if (!spec.category_given) spec.category = Category::kInference;
    if (!spec.pattern_given) spec.pattern = Pattern::kContinuous;
  }
  if (diag.error_count() > errors_before) return std::nullopt;
  return spec;
}

}  // namespace

std::optional<JobSpec> load_job_spec_file(const std::string& path, const Catalog& catalog,
                                          Diagnostics& diag) {
  auto text = read_text_file(path, kMaxJobSpecBytes);
  if (!text) {
    diag.error(path, 0, 0, "", text.error().message.substr(path.size() + 2));
    return std::nullopt;
  }
  return load_job_spec_text(*text, path, catalog, diag);
}

}  // namespace hylab
