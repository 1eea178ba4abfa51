// Cloud targets and the burst rule (see burst.h).
#include "placement/burst.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <optional>

namespace hylab::placement {

namespace {

// Whether a node of the instance carries the alternative: its model, or cards at least as
// large (GPUs for GPUs only).
bool holds_alternative(const Instance& inst, const AcceleratorRequest& req,
                       const Catalog& catalog) {
  const GpuModel* has = inst.gpu.empty() ? nullptr : catalog.find_gpu(inst.gpu);
  if (!has || inst.gpu_count < req.count) return false;
  if (req.any_model()) return !has->cloud_only() && has->memory_bytes >= req.min_memory_bytes;
  const GpuModel* want = catalog.find_gpu(req.model);
  if (!want) return false;
  if (has->name == want->name) return true;
  return !want->cloud_only() && !has->cloud_only() && has->memory_bytes >= want->memory_bytes;
}

bool pins_allow(const CloudTarget& t, const std::vector<Pin>& pins) {
  if (pins.empty()) return true;
  for (const auto& p : pins) {
    bool provider = p.provider == "*" || p.provider == t.provider;
    bool region = !p.region || *p.region == t.region;
    if (provider && region) return true;
  }
  return false;
}

// Why the target cannot take the job, or nothing when it can.
std::optional<std::string> refusal(const CloudTarget& t, const Instance* inst, const JobSpec& spec,
                                   const Catalog& catalog) {
  std::string where = t.provider.empty() ? "no provider declared" : "on " + t.provider;
  if (!t.region.empty()) where += "/" + t.region;
  if (spec.accelerators.empty()) {
    if (pins_allow(t, spec.pins)) return std::nullopt;
    std::vector<std::string> asked;
    for (const auto& p : spec.pins) asked.push_back(to_string(p));
    return fmt::format("{} ({}, the job is pinned to {})", t.name, where, fmt::join(asked, " or "));
  }
  bool carries = false;
  for (const auto& req : spec.accelerators) {
    bool fits = !inst || holds_alternative(*inst, req, catalog);
    carries = carries || fits;
    if (fits && pins_allow(t, spec.pins_of(req))) return std::nullopt;
  }
  if (!carries) {
    return fmt::format("{} ({} has {}x {})", t.name, inst->name, inst->gpu_count,
                       inst->gpu.empty() ? "no GPU" : inst->gpu);
  }
  std::vector<std::string> asked;
  for (const auto& req : spec.accelerators) {
    for (const auto& p : spec.pins_of(req)) asked.push_back(to_string(p));
  }
  return fmt::format("{} ({}, the job is pinned to {})", t.name, where, fmt::join(asked, " or "));
}

std::string money(double usd) { return fmt::format("${:.2f}", usd); }

}  // namespace

TargetChoice choose_target(const JobSpec& spec, bool spot, const Config& cfg) {
  TargetChoice best;
  std::vector<std::string> refused;
  int fitting = 0;
  for (const auto& t : cfg.clouds) {
    if (t.kind != "slurm") continue;
    const Instance* inst = t.instance.empty() ? nullptr : cfg.catalog.find_instance(t.instance);
    if (auto no = refusal(t, inst, spec, cfg.catalog)) {
      refused.push_back(std::move(*no));
      continue;
    }
    ++fitting;
    double price = !inst                               ? 0
                   : spot && !t.spot_partition.empty() ? inst->spot_usd_per_hour
                                                       : inst->usd_per_hour;
    bool better = !best.target || (inst && !best.instance) ||
                  (inst && best.instance && price < best.usd_per_hour);
    if (better) {
      best.target = &t;
      best.instance = inst;
      best.usd_per_hour = price;
    }
  }
  if (!best.target) {
    if (cfg.clouds.empty()) {
      best.why = "no cloud target is configured (clouds: in hylab.yaml)";
    } else {
      std::string list;
      for (const auto& r : refused) list += (list.empty() ? "" : ", ") + r;
      best.why = "no cloud target can hold it: " + list;
    }
    return best;
  }
  std::string price = best.instance ? fmt::format("{} at {}/h a node{}", best.instance->name,
                                                  money(best.usd_per_hour), spot ? " (spot)" : "")
                                    : "no priced instance";
  best.why = fitting == 1
                 ? fmt::format("the target that can hold it ({})", price)
                 : fmt::format("the cheapest of {} targets that can hold it ({})", fitting, price);
  return best;
}

bool burst(Decision& d, const JobSpec& spec, const LabWait& wait, bool cloud_budget_left,
           const Config& cfg) {
  if (!d.placeable || d.environment != Environment::kLocal || spec.sensitive()) return false;
  if (wait.hours <= 0 && wait.known) return false;
  const double max_wait = cfg.policy.max_local_wait_hours;
  Check c;
  c.rule = std::string(rule::kBurst);
  c.question = "Would it wait longer than the policy allows for the lab's GPUs?";
  c.inputs = {{"wait_hours", wait.known ? fmt::format("{:.2f}", wait.hours) : "unknown"},
              {"max_local_wait_hours", fmt::format("{:g}", max_wait)}};
  c.answer = wait.known && wait.hours > max_wait;
  auto keep = [&](const std::string& note) {
    c.note = note;
    d.reasons.push_back(note);
    d.path.push_back(std::move(c));
    return false;
  };
  if (!wait.known) return keep(wait.detail + "; it queues on the lab");
  if (!c.answer) {
    return keep(fmt::format("{}; within the policy's max_local_wait ({:g} h), it queues on the lab",
                            wait.detail, max_wait));
  }
  if (cfg.clouds.empty())
    return keep(wait.detail + "; no cloud target is configured to burst to, so it queues");
  if (!cloud_budget_left)
    return keep(wait.detail + "; the monthly cloud budget is spent, so it queues on the lab");
  bool spot = spec.use_spot.value_or(false);
  TargetChoice t = choose_target(spec, spot, cfg);
  if (!t.target) return keep(wait.detail + "; " + t.why + ", so it queues on the lab");
  double hours = spec.hours.value_or(1);
  int nodes = std::max(1, spec.num_nodes);
  double cloud_usd = t.usd_per_hour * nodes * hours;
  std::string per = spec.hours ? "" : " an hour";
  std::string note = fmt::format(
      "burst: {}, longer than the policy's max_local_wait ({:g} h); it runs now on cloud target "
      "{} for {}{} ({} node{} x {:g} h at {}/h{}) instead of {}{} on the lab after the wait",
      wait.detail, max_wait, t.target->name, money(cloud_usd), per, nodes, nodes == 1 ? "" : "s",
      hours, money(t.usd_per_hour), spot ? ", spot" : "", money(d.cost.local.usd), per);
  c.note = note;
  d.path.push_back(std::move(c));
  d.environment = Environment::kCloud;
  d.rule = std::string(rule::kBurst);
  d.spot = spot;
  d.reasons.push_back(note);
  return true;
}

}  // namespace hylab::placement
