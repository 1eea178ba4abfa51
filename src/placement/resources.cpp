#include "placement/resources.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "common/units.h"

namespace hylab::placement {

namespace {

std::string pins_text(const std::vector<Pin>& pins) {
  std::string out;
  for (std::size_t i = 0; i < pins.size(); ++i) out += (i ? " or " : "") + to_string(pins[i]);
  return out;
}

std::string one_request(const AcceleratorRequest& a, const Catalog& catalog) {
  if (a.any_model()) {
    return a.min_memory_bytes
               ? fmt::format("{}x any GPU ({}+ each)", a.count, format_bytes(a.min_memory_bytes))
               : fmt::format("{}x any GPU", a.count);
  }
  const GpuModel* m = catalog.find_gpu(a.model);
  if (m && m->cloud_only()) return fmt::format("{}x {}", a.count, a.model);
  return fmt::format("{}x {} ({} each)", a.count, a.model, m ? format_bytes(m->memory_bytes) : "?");
}

// Memory per node: the figure asked for, or its share per vCPU ("8x") of the CPUs asked.
std::optional<std::uint64_t> memory_needed(const JobSpec& spec) {
  std::optional<std::uint64_t> m = spec.memory_bytes;
  if (spec.memory_per_cpu_gib && spec.cpus) {
    auto per = static_cast<std::uint64_t>(*spec.memory_per_cpu_gib * *spec.cpus * kGiB);
    m = std::max(m.value_or(0), per);
  }
  return m;
}

// Other resources than GPUs, checked against the lab as a whole: every shortfall.
std::vector<std::string> host_shortfalls(const JobSpec& spec, const Lab& lab) {
  std::vector<std::string> out;
  double nodes = spec.num_nodes;
  if (spec.cpus && lab.cpus > 0 && *spec.cpus * nodes > lab.cpus) {
    out.push_back(fmt::format("needs {:g} CPUs; the lab has {}", *spec.cpus * nodes, lab.cpus));
  }
  auto memory = memory_needed(spec);
  if (memory && lab.memory_bytes > 0 &&
      static_cast<double>(*memory) * nodes > static_cast<double>(lab.memory_bytes)) {
    out.push_back(
        fmt::format("needs {} memory; the lab has {}",
                    format_bytes(static_cast<std::uint64_t>(static_cast<double>(*memory) * nodes)),
                    format_bytes(lab.memory_bytes)));
  }
  if (spec.disk_bytes && lab.disk_bytes > 0 && *spec.disk_bytes > lab.disk_bytes) {
    out.push_back(fmt::format("needs {} disk; the lab has {}", format_bytes(*spec.disk_bytes),
                              format_bytes(lab.disk_bytes)));
  }
  if (spec.data_bytes && lab.disk_bytes > 0 && *spec.data_bytes > lab.disk_bytes) {
    out.push_back(fmt::format("its data ({}) is larger than the lab's disk ({})",
                              format_bytes(*spec.data_bytes), format_bytes(lab.disk_bytes)));
  }
  return out;
}

void join_into(std::string& out, const std::string& part) {
  if (!out.empty()) out += "; ";
  out += part;
}

std::string pinned_note(const std::vector<Pin>& pins) {
  return fmt::format("pinned to {}: it runs only on a cloud target that declares {}",
                     pins_text(pins), pins.size() == 1 ? "it" : "one of them");
}

// The lab's cards for one alternative: the exact model first, then the fastest with enough
// memory each; any card for a count of any model, fastest first.
std::vector<const LabGpu*> lab_cards_for(const GpuModel* want, std::uint64_t min_memory,
                                         const Lab& lab) {
  std::vector<const LabGpu*> cards, others;
  for (const auto& g : lab.gpus) {
    if (want && g.model == want->name) {
      cards.push_back(&g);
    } else if (!want ? g.memory_bytes >= min_memory : g.memory_bytes >= want->memory_bytes) {
      others.push_back(&g);
    }
  }
  std::stable_sort(others.begin(), others.end(),
                   [](const LabGpu* a, const LabGpu* b) { return a->tflops > b->tflops; });
  cards.insert(cards.end(), others.begin(), others.end());
  return cards;
}

}  // namespace

std::string describe_alternative(const AcceleratorRequest& a, const Catalog& catalog) {
  std::string out = one_request(a, catalog);
  if (a.pin) out += " on " + to_string(*a.pin);
  return out;
}

std::string describe_request(const JobSpec& spec, const Catalog& catalog) {
  std::string out;
  if (spec.accelerators.empty()) {
    out = spec.cpus ? fmt::format("{:g} CPUs", *spec.cpus) : "CPU only";
  } else {
    for (std::size_t i = 0; i < spec.accelerators.size(); ++i) {
      if (i) out += spec.ordered ? ", else " : " or ";
      out += describe_alternative(spec.accelerators[i], catalog);
    }
  }
  if (spec.num_nodes > 1) out += fmt::format(" on each of {} nodes", spec.num_nodes);
  if (!spec.pins.empty()) out += " on " + pins_text(spec.pins);
  return out;
}

std::string describe_lab(const Lab& lab) {
  std::string out;
  if (lab.gpus.empty()) out = "no GPUs";
  for (std::size_t i = 0; i < lab.gpus.size(); ++i) {
    if (i) out += " + ";
    out += fmt::format("{}x {} ({} each)", lab.gpus[i].count, lab.gpus[i].model,
                       format_bytes(lab.gpus[i].memory_bytes));
  }
  if (lab.cpus > 0) out += fmt::format(", {} CPUs", lab.cpus);
  if (lab.memory_bytes > 0) out += fmt::format(", {} memory", format_bytes(lab.memory_bytes));
  return out;
}

LocalFit fit_local(const JobSpec& spec, const Config& cfg) {
  const Lab& lab = cfg.lab;
  LocalFit fit;
  fit.request = describe_request(spec, cfg.catalog);
  if (!cfg.has_lab) {
    fit.why_not = "the config describes no lab (add a lab: section to hylab.yaml)";
    return fit;
  }
  std::vector<std::string> host = host_shortfalls(spec, lab);
  auto with_host = [&](LocalFit f) {
    for (const auto& h : host) join_into(f.why_not, h);
    if (!host.empty()) f.fits = false;
    return f;
  };
  if (spec.accelerators.empty()) {
    if (!spec.pins.empty()) {
      fit.why_not = pinned_note(spec.pins);
      return fit;
    }
    if (!host.empty()) return with_host(fit);
    fit.fits = true;
    fit.allocation = spec.cpus ? fmt::format("{:g} CPUs", *spec.cpus) : "CPUs";
    // A CPU job's share of the lab is its share of the CPUs (one CPU when unsaid).
    double cpus = spec.cpus.value_or(1) * spec.num_nodes;
    fit.share = lab.cpus > 0 ? std::min(1.0, cpus / lab.cpus) : 1.0;
    return fit;
  }
  std::vector<std::string> misses;
  for (std::size_t i = 0; i < spec.accelerators.size(); ++i) {
    const AcceleratorRequest& req = spec.accelerators[i];
    if (auto pins = spec.pins_of(req); !pins.empty()) {
      misses.push_back(fmt::format("{}: {}", one_request(req, cfg.catalog), pinned_note(pins)));
      continue;
    }
    const GpuModel* want = req.any_model() ? nullptr : cfg.catalog.find_gpu(req.model);
    if (!req.any_model() && !want) continue;
    if (want && want->cloud_only()) {
      misses.push_back(fmt::format("{} is a cloud-only accelerator ({}): no lab has one",
                                   want->name, want->kind));
      continue;
    }
    int need = req.count * spec.num_nodes;
    std::vector<const LabGpu*> cards = lab_cards_for(want, req.min_memory_bytes, lab);
    int taken = 0;
    double tflops = 0;
    std::vector<std::string> parts;
    for (const LabGpu* g : cards) {
      int take = std::min(g->count, need - taken);
      if (take <= 0) break;
      taken += take;
      tflops += take * g->tflops;
      parts.push_back(fmt::format("{}x {}", take, g->model));
    }
    if (taken < need) {
      int eligible = 0;
      for (const LabGpu* g : cards) eligible += g->count;
      misses.push_back(
          want ? fmt::format("needs {} GPUs with at least {} each ({}); the lab has {} such ({})",
                             need, format_bytes(want->memory_bytes), want->name, eligible,
                             describe_lab(lab))
               : fmt::format("needs {} GPUs of any model{}; the lab has {} such ({})", need,
                             req.min_memory_bytes ? fmt::format(" with at least {} each",
                                                                format_bytes(req.min_memory_bytes))
                                                  : "",
                             eligible, describe_lab(lab)));
      continue;
    }
    if (req.cpus || req.memory_bytes) {  // an alternative with its own CPUs or memory
      auto own = host_shortfalls(spec.as_alternative(req), lab);
      if (!own.empty()) {
        std::string why;
        for (const auto& h : own) join_into(why, h);
        misses.push_back(
            fmt::format("{} ({}): {}", one_request(req, cfg.catalog), req.origin, why));
        continue;
      }
    } else if (!host.empty()) {
      return with_host(fit);
    }
    fit.fits = true;
    fit.gpus_used = need;
    fit.share = static_cast<double>(need) / lab.gpu_count();
    fit.speed = want && want->tflops > 0 ? tflops / (need * want->tflops) : 1;
    fit.alternative = static_cast<int>(i);
    fit.passed = misses;
    for (std::size_t k = 0; k < parts.size(); ++k) fit.allocation += (k ? " + " : "") + parts[k];
    return fit;
  }
  fit.why_not = misses.empty() ? "no GPU model of the request is in the catalog" : misses.front();
  for (std::size_t i = 1; i < misses.size(); ++i) fit.why_not += "; or " + misses[i];
  return with_host(fit);
}

namespace {

bool provider_allowed(const Instance& inst, const std::vector<Pin>& pins) {
  if (pins.empty()) return true;
  return std::any_of(pins.begin(), pins.end(), [&](const Pin& p) {
    return p.provider == "*" || p.provider == inst.provider;
  });
}

// The catalog prices each instance in one region: a region pin elsewhere is priced there.
std::string region_note(const Instance& inst, const std::vector<Pin>& pins) {
  std::vector<std::string> asked;
  for (const auto& p : pins) {
    if (!p.region) continue;
    if (*p.region == inst.region) return "";
    asked.push_back(*p.region);
  }
  if (asked.empty()) return "";
  return fmt::format("; priced in {} (the catalog has no {} price)", inst.region, asked.front());
}

class CloudMatch {
 public:
  CloudMatch(const JobSpec& spec, const Catalog& catalog) : spec_(spec), catalog_(catalog) {}

  // The cheapest instance for one alternative (nullptr: CPUs only) within its pins.
  std::optional<CloudOffer> best_for(const AcceleratorRequest* req) {
    std::vector<Pin> pins = req ? spec_.pins_of(*req) : spec_.pins;
    const JobSpec asked = req ? spec_.as_alternative(*req) : spec_;
    best_.reset();
    best_cost_ = std::numeric_limits<double>::infinity();
    auto fits = [&](const Instance& inst) {
      return provider_allowed(inst, pins) && host_ok(asked, inst);
    };
    if (!req) {
      for (const auto& inst : catalog_.instances) {
        if (inst.gpu_count == 0 && fits(inst)) consider(inst, 1, "cheapest CPU instance that fits");
      }
    } else if (req->any_model()) {
      for (const auto& inst : catalog_.instances) {
        const GpuModel* has = inst.gpu.empty() ? nullptr : catalog_.find_gpu(inst.gpu);
        if (!has || has->cloud_only() || has->memory_bytes < req->min_memory_bytes ||
            inst.gpu_count < req->count || !fits(inst))
          continue;
        consider(inst, 1,
                 fmt::format("any GPU model: the cheapest catalog GPU that fits, {}x {}",
                             inst.gpu_count, has->name));
      }
    } else if (const GpuModel* want = catalog_.find_gpu(req->model)) {
      for (const auto& inst : catalog_.instances) {
        if (inst.gpu == want->name && inst.gpu_count >= req->count && fits(inst)) {
          consider(inst, 1, fmt::format("cheapest instance with {}x {}", req->count, want->name));
        }
      }
      // No cloud rents the requested model (a consumer card): the cheapest instance with
      // cards at least as large, its run time scaled by relative throughput. Never for an
      // accelerator that is not a GPU, nor with one.
      if (!best_ && !want->cloud_only() && want->tflops > 0) {
        for (const auto& inst : catalog_.instances) {
          const GpuModel* has = inst.gpu.empty() ? nullptr : catalog_.find_gpu(inst.gpu);
          if (!has || has->cloud_only() || has->memory_bytes < want->memory_bytes ||
              inst.gpu_count < req->count || !fits(inst))
            continue;
          consider(inst, has->tflops / want->tflops,
                   fmt::format("no catalog instance rents {}; priced as {}x {} ({:.2g}x the speed)",
                               want->name, inst.gpu_count, has->name, has->tflops / want->tflops));
        }
      }
    }
    if (best_) best_->note += region_note(*best_->instance, pins);
    return best_;
  }

  double cost(const CloudOffer& o) const { return o.usd_per_hour() / o.speed; }

 private:
  static bool host_ok(const JobSpec& spec, const Instance& inst) {
    if (spec.cpus && inst.vcpus < *spec.cpus) return false;
    if (spec.memory_bytes && inst.memory_bytes < *spec.memory_bytes) return false;
    if (spec.memory_per_cpu_gib &&
        static_cast<double>(inst.memory_bytes) < *spec.memory_per_cpu_gib * kGiB * inst.vcpus)
      return false;
    return true;
  }

  void consider(const Instance& inst, double speed, std::string note) {
    double cost = inst.usd_per_hour * spec_.num_nodes / speed;
    if (cost < best_cost_) {
      best_cost_ = cost;
      best_ = CloudOffer{&inst, spec_.num_nodes, speed, std::move(note), -1, {}};
    }
  }

  const JobSpec& spec_;
  const Catalog& catalog_;
  std::optional<CloudOffer> best_;
  double best_cost_ = 0;
};

}  // namespace

std::optional<CloudOffer> match_cloud(const JobSpec& spec, const Catalog& catalog,
                                      std::string* why_none) {
  const int nodes = spec.num_nodes;
  if (spec.instance_type) {
    const Instance* inst = catalog.find_instance(*spec.instance_type);
    if (!inst) return std::nullopt;
    CloudOffer o{inst, nodes, 1, "named by resources.instance_type", -1, {}};
    if (!spec.accelerators.empty() && !spec.accelerators.front().any_model()) {
      const GpuModel* want = catalog.find_gpu(spec.accelerators.front().model);
      const GpuModel* has = inst->gpu.empty() ? nullptr : catalog.find_gpu(inst->gpu);
      if (want && has && want->tflops > 0) {
        o.speed =
            std::min(1.0, static_cast<double>(inst->gpu_count) / spec.accelerators.front().count) *
            has->tflops / want->tflops;
      }
    }
    if (!spec.accelerators.empty()) o.alternative = 0;
    return o;
  }
  CloudMatch match(spec, catalog);
  std::optional<CloudOffer> best;
  if (spec.accelerators.empty()) {
    best = match.best_for(nullptr);
  } else {
    std::vector<std::string> compared;
    for (std::size_t i = 0; i < spec.accelerators.size(); ++i) {
      const AcceleratorRequest& req = spec.accelerators[i];
      auto offer = match.best_for(&req);
      std::string what = describe_alternative(req, catalog);
      if (!offer) {
        compared.push_back(what + ": no catalog instance");
        continue;
      }
      compared.push_back(
          fmt::format("{}: {} at ${:.2f}/h", what, offer->instance->name, offer->usd_per_hour()));
      offer->alternative = static_cast<int>(i);
      if (!best || (!spec.ordered && match.cost(*offer) < match.cost(*best))) best = offer;
    }
    if (best && spec.accelerators.size() > 1) best->compared = std::move(compared);
  }
  if (!best && why_none) {
    *why_none = fmt::format("no catalog instance offers {}", describe_request(spec, catalog));
  }
  return best;
}

}  // namespace hylab::placement
