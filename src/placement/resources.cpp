#include "placement/resources.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "common/units.h"

namespace hylab::placement {

namespace {

std::string one_request(const AcceleratorRequest& a, const Catalog& catalog) {
  const GpuModel* m = catalog.find_gpu(a.model);
  return fmt::format("{}x {} ({} each)", a.count, a.model, m ? format_bytes(m->memory_bytes) : "?");
}

// Other resources than GPUs, checked against the lab as a whole: every shortfall.
std::vector<std::string> host_shortfalls(const JobSpec& spec, const Lab& lab) {
  std::vector<std::string> out;
  double nodes = spec.num_nodes;
  if (spec.cpus && lab.cpus > 0 && *spec.cpus * nodes > lab.cpus) {
    out.push_back(fmt::format("needs {:g} CPUs; the lab has {}", *spec.cpus * nodes, lab.cpus));
  }
  if (spec.memory_bytes && lab.memory_bytes > 0 &&
      static_cast<double>(*spec.memory_bytes) * nodes > static_cast<double>(lab.memory_bytes)) {
    out.push_back(fmt::format(
        "needs {} memory; the lab has {}",
        format_bytes(static_cast<std::uint64_t>(static_cast<double>(*spec.memory_bytes) * nodes)),
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

}  // namespace

std::string describe_request(const JobSpec& spec, const Catalog& catalog) {
  std::string out;
  if (spec.accelerators.empty()) {
    out = spec.cpus ? fmt::format("{:g} CPUs", *spec.cpus) : "CPU only";
  } else {
    for (std::size_t i = 0; i < spec.accelerators.size(); ++i) {
      if (i) out += " or ";
      out += one_request(spec.accelerators[i], catalog);
    }
  }
  if (spec.num_nodes > 1) out += fmt::format(" on each of {} nodes", spec.num_nodes);
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
    if (!host.empty()) return with_host(fit);
    fit.fits = true;
    fit.allocation = spec.cpus ? fmt::format("{:g} CPUs", *spec.cpus) : "CPUs";
    // A CPU job's share of the lab is its share of the CPUs (one CPU when unsaid).
    double cpus = spec.cpus.value_or(1) * spec.num_nodes;
    fit.share = lab.cpus > 0 ? std::min(1.0, cpus / lab.cpus) : 1.0;
    return fit;
  }
  std::vector<std::string> misses;
  for (const auto& req : spec.accelerators) {
    const GpuModel* want = cfg.catalog.find_gpu(req.model);
    if (!want) continue;
    int need = req.count * spec.num_nodes;
    // Exact model first, then the fastest cards with enough memory each.
    std::vector<const LabGpu*> cards;
    for (const auto& g : lab.gpus) {
      if (g.model == want->name) cards.push_back(&g);
    }
    std::vector<const LabGpu*> others;
    for (const auto& g : lab.gpus) {
      if (g.model != want->name && g.memory_bytes >= want->memory_bytes) others.push_back(&g);
    }
    std::stable_sort(others.begin(), others.end(),
                     [](const LabGpu* a, const LabGpu* b) { return a->tflops > b->tflops; });
    cards.insert(cards.end(), others.begin(), others.end());
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
          fmt::format("needs {} GPUs with at least {} each ({}); the lab has {} such ({})", need,
                      format_bytes(want->memory_bytes), want->name, eligible, describe_lab(lab)));
      continue;
    }
    if (!host.empty()) return with_host(fit);
    fit.fits = true;
    fit.gpus_used = need;
    fit.share = static_cast<double>(need) / lab.gpu_count();
    fit.speed = want->tflops > 0 ? tflops / (need * want->tflops) : 1;
    for (std::size_t i = 0; i < parts.size(); ++i) fit.allocation += (i ? " + " : "") + parts[i];
    return fit;
  }
  fit.why_not = misses.empty() ? "no GPU model of the request is in the catalog" : misses.front();
  for (std::size_t i = 1; i < misses.size(); ++i) fit.why_not += "; or " + misses[i];
  return with_host(fit);
}

std::optional<CloudOffer> match_cloud(const JobSpec& spec, const Catalog& catalog,
                                      std::string* why_none) {
  auto host_ok = [&](const Instance& inst) {
    if (spec.cloud && inst.provider != *spec.cloud) return false;
    if (spec.cpus && inst.vcpus < *spec.cpus) return false;
    if (spec.memory_bytes && inst.memory_bytes < *spec.memory_bytes) return false;
    return true;
  };
  const int nodes = spec.num_nodes;
  if (spec.instance_type) {
    const Instance* inst = catalog.find_instance(*spec.instance_type);
    if (!inst) return std::nullopt;
    CloudOffer o{inst, nodes, 1, "named by resources.instance_type"};
    if (!spec.accelerators.empty()) {
      const GpuModel* want = catalog.find_gpu(spec.accelerators.front().model);
      const GpuModel* has = inst->gpu.empty() ? nullptr : catalog.find_gpu(inst->gpu);
      if (want && has && want->tflops > 0) {
        o.speed =
            std::min(1.0, static_cast<double>(inst->gpu_count) / spec.accelerators.front().count) *
            has->tflops / want->tflops;
      }
    }
    return o;
  }
  std::optional<CloudOffer> best;
  double best_cost = std::numeric_limits<double>::infinity();
  auto consider = [&](const Instance& inst, double speed, std::string note) {
    double cost = inst.usd_per_hour * nodes / speed;
    if (cost < best_cost) {
      best_cost = cost;
      best = CloudOffer{&inst, nodes, speed, std::move(note)};
    }
  };
  if (spec.accelerators.empty()) {
    for (const auto& inst : catalog.instances) {
      if (inst.gpu_count == 0 && host_ok(inst))
        consider(inst, 1, "cheapest CPU instance that fits");
    }
  } else {
    for (const auto& req : spec.accelerators) {
      const GpuModel* want = catalog.find_gpu(req.model);
      if (!want) continue;
      for (const auto& inst : catalog.instances) {
        if (inst.gpu.empty() || inst.gpu_count < req.count || !host_ok(inst)) continue;
        if (inst.gpu == want->name) {
          consider(inst, 1, fmt::format("cheapest instance with {}x {}", req.count, want->name));
        }
      }
    }
    if (!best) {
      // No cloud rents the requested model (a consumer card): the cheapest instance with
      // cards at least as large, its run time scaled by relative throughput.
      for (const auto& req : spec.accelerators) {
        const GpuModel* want = catalog.find_gpu(req.model);
        if (!want || want->tflops <= 0) continue;
        for (const auto& inst : catalog.instances) {
          if (inst.gpu.empty() || inst.gpu_count < req.count || !host_ok(inst)) continue;
          const GpuModel* has = catalog.find_gpu(inst.gpu);
          if (!has || has->memory_bytes < want->memory_bytes) continue;
          consider(inst, has->tflops / want->tflops,
                   fmt::format("no catalog instance rents {}; priced as {}x {} ({:.2g}x the speed)",
                               want->name, inst.gpu_count, has->name, has->tflops / want->tflops));
        }
      }
    }
  }
  if (!best && why_none) {
    *why_none =
        fmt::format("no catalog instance{} offers {}", spec.cloud ? " of " + *spec.cloud : "",
                    describe_request(spec, catalog));
  }
  return best;
}

}  // namespace hylab::placement
