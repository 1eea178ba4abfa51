#include "placement/engine.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>

#include "common/units.h"
#include "placement/cost.h"

namespace hylab::placement {

std::string_view to_string(Environment e) {
  switch (e) {
    case Environment::kLocal:
      return "local";
    case Environment::kCloud:
      return "cloud";
    case Environment::kHybrid:
      return "hybrid";
  }
  return "?";
}

LocalCostInputs lab_cost_inputs(const Lab& lab, double share) {
  return LocalCostInputs{lab.hardware_usd * share, lab.service_life_months, lab.busy_watts * share,
                         lab.idle_watts * share, lab.electricity_usd_per_kwh};
}

namespace {

std::string given(std::string_view value, bool was_given) {
  return was_given ? std::string(value) : std::string(value) + " (default)";
}

CostEstimate estimate(const JobSpec& spec, const Config& cfg, const LocalFit& fit,
                      const std::optional<CloudOffer>& offer, const std::string& why_no_cloud) {
  CostEstimate c;
  c.per_hour = !spec.hours.has_value();
  c.hours = spec.hours.value_or(1);
  c.local.fits = fit.fits;
  c.local.why_not = fit.why_not;
  c.local.allocation = fit.allocation;
  if (fit.fits) {
    c.local.share = fit.share;
    c.local.hours = c.hours / fit.speed;
    c.local.usd = local_job_usd(lab_cost_inputs(cfg.lab, 1.0), fit.share, c.local.hours);
  }
  if (offer) {
    const Instance& inst = *offer->instance;
    c.cloud.available = true;
    c.cloud.provider = inst.provider;
    c.cloud.instance = inst.name;
    c.cloud.count = offer->count;
    c.cloud.hours = c.hours / offer->speed;
    c.cloud.usd_per_hour = offer->usd_per_hour();
    c.cloud.spot_usd_per_hour = offer->spot_usd_per_hour();
    c.cloud.usd_on_demand = c.cloud.usd_per_hour * c.cloud.hours;
    c.cloud.usd_spot = c.cloud.spot_usd_per_hour * c.cloud.hours;
    c.cloud.note = offer->note;
    c.cloud.source = inst.source;
    c.cloud.date = inst.date;
  } else {
    c.cloud.why_not = why_no_cloud;
  }
  return c;
}

class Tree {
 public:
  Tree(const JobSpec& spec, const Config& cfg) : spec_(spec), cfg_(cfg) {
    fit_ = fit_local(spec, cfg);
    offer_ = match_cloud(spec, cfg.catalog, &why_no_cloud_);
    d_.name = spec.name;
    d_.file = spec.file;
    d_.cost = estimate(spec, cfg, fit_, offer_, why_no_cloud_);
  }

  Decision run() {
    if (spec_.service && !spec_.category_given) {
      d_.reasons.push_back(
          "service: an inference service (category inference, pattern continuous), never on "
          "spot unless resources.use_spot says so");
    } else if (!spec_.category_given) {
      d_.reasons.push_back("category not set: treated as training (set category: to be sure)");
    }
    if (spec_.category == Category::kDataProcessing) d_.matrix_cell = matrix_cell();

    if (sensitive()) return finish();
    if (development()) return finish();
    if (beyond_capacity()) return finish();
    if (spec_.category == Category::kDataProcessing) {
      data_matrix();
      return finish();
    }
    if (one_time_large()) return finish();
    if (production_inference()) return finish();
    if (continuous()) return finish();
    if (global_reach()) return finish();
    Check& c = ask(rule::kDefaultLocal, "Otherwise", true);
    c.note = "local";
    decide(Environment::kLocal, rule::kDefaultLocal,
           "nothing calls for the cloud: the lab runs it at the cost of its electricity and wear");
    return finish();
  }

 private:
  Check& ask(std::string_view rule, std::string question, bool answer) {
    d_.path.push_back(Check{std::string(rule), std::move(question), answer, {}, {}});
    return d_.path.back();
  }

  void decide(Environment env, std::string_view rule, std::string reason) {
    d_.environment = env;
    d_.rule = std::string(rule);
    d_.reasons.insert(d_.reasons.begin() + static_cast<long>(prefix_reasons()), std::move(reason));
  }

  // The "category not set" (or "service") note stays first; the deciding reason follows.
  std::size_t prefix_reasons() const { return spec_.category_given ? 0 : 1; }

  // The spot choice of the alternative the cloud takes, else the job's.
  std::optional<bool> use_spot() const {
    if (offer_ && offer_->alternative >= 0) {
      const auto& a = spec_.accelerators[static_cast<std::size_t>(offer_->alternative)];
      if (a.use_spot) return a.use_spot;
    }
    return spec_.use_spot;
  }

  // Spot unless the job said otherwise: batch work that can restart (training and data
  // processing that is not continuous) saves the spot discount; services do not.
  void choose_spot(bool suits_spot) {
    if (auto asked = use_spot()) {
      d_.spot = *asked;
      d_.reasons.push_back(
          fmt::format("spot {} by resources.use_spot", d_.spot ? "requested" : "declined"));
      return;
    }
    d_.spot = suits_spot;
    if (suits_spot) {
      d_.reasons.push_back(fmt::format(
          "spot capacity: restartable batch work; spot saves {:.0f}% (resume from checkpoints)",
          offer_ && offer_->usd_per_hour() > 0
              ? 100 * (1 - offer_->spot_usd_per_hour() / offer_->usd_per_hour())
              : 100 * cfg_.catalog.spot_discount));
    }
  }

  bool batch() const {
    return spec_.pattern != Pattern::kContinuous &&
           (spec_.category == Category::kTraining || spec_.category == Category::kDataProcessing);
  }

  bool large_data() const {
    return spec_.data_bytes && *spec_.data_bytes > cfg_.policy.large_data_bytes;
  }

  std::string data_size() const {
    return spec_.data_bytes ? format_bytes(*spec_.data_bytes) : "not given";
  }

  std::string matrix_cell() const {
    bool big = large_data();
    bool sens = spec_.sensitive();
    if (!big && sens) return "< threshold, sensitive: local";
    if (!big && !sens) return "< threshold, not sensitive: local (cost-effective)";
    if (big && sens) return "> threshold, sensitive: local (with cloud backup)";
    return "> threshold, not sensitive: cloud (scalable storage)";
  }

  void add_local_timing() {
    if (!fit_.fits) return;
    if (fit_.speed < 0.999) {
      d_.reasons.push_back(
          fmt::format("runs on {} in about {}{}, {:.1f}x the time on the requested GPUs",
                      fit_.allocation, format_hours(d_.cost.local.hours),
                      d_.cost.per_hour ? " per requested hour" : "", 1 / fit_.speed));
    } else if (spec_.hours) {
      d_.reasons.push_back(fmt::format("runs on {} in about {}",
                                       fit_.allocation.empty() ? "the lab" : fit_.allocation,
                                       format_hours(d_.cost.local.hours)));
    }
  }

  bool sensitive() {
    Check& c = ask(rule::kSensitiveData, "Is data sensitive or regulated?", spec_.sensitive());
    c.inputs = {{"data.sensitivity", given(to_string(spec_.sensitivity), spec_.sensitivity_given)}};
    if (!spec_.sensitive()) {
      c.note = "continue";
      return false;
    }
    d_.environment = Environment::kLocal;
    d_.rule = std::string(rule::kSensitiveData);
    if (!fit_.fits) {
      d_.placeable = false;
      c.note = "local, but the lab cannot run it: cannot place";
      d_.reasons.insert(
          d_.reasons.begin() + static_cast<long>(prefix_reasons()),
          fmt::format("cannot place: {} data never leaves the lab, and the lab cannot run "
                      "this job: {}. Reduce the request or add hardware to the lab",
                      to_string(spec_.sensitivity), fit_.why_not));
      return true;
    }
    c.note = "local (hard constraint: never cloud)";
    decide(Environment::kLocal, rule::kSensitiveData,
           fmt::format("{} data stays in the lab: a hard constraint, never cloud",
                       to_string(spec_.sensitivity)));
    if (d_.matrix_cell && large_data()) {
      d_.reasons.push_back(
          "the guide's matrix adds a cloud backup for large sensitive data: back up encrypted "
          "copies "
          "only; hylab data refuses plain uploads of sensitive paths");
    }
    add_local_timing();
    if (use_spot().value_or(false) || spec_.instance_type) {
      d_.reasons.push_back(
          "resources.use_spot/instance_type ignored: the job cannot go to the cloud");
    }
    return true;
  }

  bool development() {
    bool dev = spec_.category == Category::kDevelopment;
    Check& c = ask(rule::kDevelopment, "Is this development/prototyping?", dev);
    c.inputs = {{"category", given(to_string(spec_.category), spec_.category_given)}};
    if (!dev) {
      c.note = "continue";
      return false;
    }
    if (!fit_.fits) {
      c.note = "local, but it does not fit the lab: continue";
      return false;
    }
    c.note = "local";
    decide(Environment::kLocal, rule::kDevelopment,
           "development iterates fastest on the lab's GPUs, at no hourly price");
    add_local_timing();
    return true;
  }

  bool beyond_capacity() {
    Check& c = ask(rule::kBeyondCapacity, "Is compute requirement > local capacity?", !fit_.fits);
    c.inputs = {{"request", fit_.request},
                {"lab", cfg_.has_lab ? describe_lab(cfg_.lab) : "none configured"}};
    if (fit_.fits) {
      c.inputs.emplace_back("allocation", fit_.allocation);
      c.note = "continue";
      return false;
    }
    c.inputs.emplace_back("shortfall", fit_.why_not);
    c.note = "cloud";
    decide(Environment::kCloud, rule::kBeyondCapacity, "the lab cannot run it: " + fit_.why_not);
    cloud_availability();
    choose_spot(batch());
    return true;
  }

  void data_matrix() {
    bool big = large_data();
    Check& c = ask(rule::kDataMatrix, "Data processing: data size x sensitivity", big);
    c.inputs = {{"data.size", data_size()},
                {"threshold", format_bytes(cfg_.policy.large_data_bytes)},
                {"data.sensitivity", given(to_string(spec_.sensitivity), spec_.sensitivity_given)}};
    c.note = *d_.matrix_cell;
    if (big) {
      decide(Environment::kCloud, rule::kDataMatrix,
             fmt::format("{} of data is over {}, not sensitive: cloud for scalable storage",
                         data_size(), format_bytes(cfg_.policy.large_data_bytes)));
      cloud_availability();
      choose_spot(batch());
    } else {
      decide(Environment::kLocal, rule::kDataMatrix,
             fmt::format("{} of data is within {}: local is cost-effective", data_size(),
                         format_bytes(cfg_.policy.large_data_bytes)));
      add_local_timing();
    }
  }

  bool one_time_large() {
    bool once = spec_.pattern == Pattern::kOneTime;
    bool long_run = spec_.hours && d_.cost.local.hours > cfg_.policy.large_job_hours;
    bool yes = once && (long_run || large_data());
    Check& c = ask(rule::kOneTimeLarge, "Is this a one-time large job?", yes);
    c.inputs = {
        {"pattern", std::string(to_string(spec_.pattern))},
        {"local run time", spec_.hours ? format_hours(d_.cost.local.hours) : "unknown (no hours)"},
        {"large job over", format_hours(cfg_.policy.large_job_hours)},
        {"data.size", data_size()}};
    if (!yes) {
      c.note = "continue";
      return false;
    }
    c.note = "cloud (spot instances)";
    decide(Environment::kCloud, rule::kOneTimeLarge,
           long_run
               ? fmt::format("one-time job of {} on the lab (over {}): rent the capacity once",
                             format_hours(d_.cost.local.hours),
                             format_hours(cfg_.policy.large_job_hours))
               : fmt::format("one-time job over {} of data: rent the capacity once", data_size()));
    cloud_availability();
    choose_spot(true);
    return true;
  }

  bool production_inference() {
    bool yes = spec_.category == Category::kInference && spec_.pattern == Pattern::kContinuous;
    Check& c = ask(rule::kProductionInference, "Is this production inference (continuous)?", yes);
    c.inputs = {{"category", given(to_string(spec_.category), spec_.category_given)},
                {"pattern", std::string(to_string(spec_.pattern))}};
    if (!yes) {
      c.note = "continue";
      return false;
    }
    c.note = "hybrid";
    compute_breakeven();
    decide(Environment::kHybrid, rule::kProductionInference,
           "production inference: served by the gateway from the lab first, overflowing to the "
           "cloud at peak and failing over when the lab is down");
    choose_spot(false);  // a service is never on spot unless resources.use_spot says so
    if (d_.breakeven_months && offer_) {
      d_.reasons.push_back(
          fmt::format("the lab's share pays for itself in {:.1f} months of 24/7 "
                      "serving against {}",
                      *d_.breakeven_months, offer_->instance->name));
    }
    return true;
  }

  void compute_breakeven() {
    if (!offer_ || !fit_.fits) return;
    Breakeven b = breakeven(lab_cost_inputs(cfg_.lab, fit_.share),
                            offer_->usd_per_hour() / offer_->speed * fit_.speed, 24);
    d_.breakeven_months = b.months;
  }

  bool continuous() {
    bool yes = spec_.pattern == Pattern::kContinuous;
    Check& c = ask(rule::kContinuous, "Is this continuous 24/7 workload?", yes);
    c.inputs = {{"pattern", std::string(to_string(spec_.pattern))}};
    if (!yes) {
      c.note = "continue";
      return false;
    }
    compute_breakeven();
    c.inputs.emplace_back("break-even limit",
                          fmt::format("{:g} months", cfg_.policy.breakeven_limit_months));
    if (!offer_) {
      c.inputs.emplace_back("break-even", "no cloud price to compare");
      c.note = "local";
      decide(Environment::kLocal, rule::kContinuous,
             "continuous work, and the catalog has no cloud instance to compare with: " +
                 why_no_cloud_);
      return true;
    }
    std::string months =
        d_.breakeven_months ? fmt::format("{:.1f} months", *d_.breakeven_months) : "never";
    c.inputs.emplace_back("break-even", months);
    if (d_.breakeven_months && *d_.breakeven_months < cfg_.policy.breakeven_limit_months) {
      c.note = "local";
      decide(Environment::kLocal, rule::kContinuous,
             fmt::format("continuous 24/7: the lab's share pays for itself in {} against {} "
                         "(under the {:g}-month limit)",
                         months, offer_->instance->name, cfg_.policy.breakeven_limit_months));
      add_local_timing();
    } else {
      c.note = "cloud";
      decide(Environment::kCloud, rule::kContinuous,
             fmt::format("continuous 24/7, but the lab's share would pay for itself only in {} "
                         "(limit {:g} months)",
                         months, cfg_.policy.breakeven_limit_months));
      choose_spot(false);
    }
    return true;
  }

  bool global_reach() {
    bool yes = spec_.reach == Reach::kGlobal;
    Check& c = ask(rule::kGlobalReach, "Need global distribution?", yes);
    c.inputs = {{"reach", std::string(to_string(spec_.reach))}};
    if (!yes) {
      c.note = "continue";
      return false;
    }
    c.note = "cloud";
    decide(Environment::kCloud, rule::kGlobalReach,
           "global reach: users worldwide are served from cloud regions near them");
    cloud_availability();
    choose_spot(false);
    return true;
  }

  void cloud_availability() {
    if (!offer_)
      d_.reasons.push_back("no price: " + why_no_cloud_ + " (add one under catalog.instances)");
  }

  // Among several alternatives, which one won where the job goes, and why.
  void explain_alternatives() {
    if (spec_.accelerators.size() < 2 || !d_.placeable) return;
    auto name = [&](int i) {
      const auto& a = spec_.accelerators[static_cast<std::size_t>(i)];
      return fmt::format("{}{}", describe_alternative(a, cfg_.catalog),
                         a.origin.empty() ? "" : " (" + a.origin + ")");
    };
    if (d_.environment != Environment::kCloud) {
      if (fit_.alternative < 0) return;
      std::string why =
          fmt::format("of {} alternatives the lab runs the first it can hold: {}, as {}",
                      spec_.accelerators.size(), name(fit_.alternative), fit_.allocation);
      if (!fit_.passed.empty())
        why += fmt::format(" (before it: {})", fmt::join(fit_.passed, "; "));
      d_.reasons.push_back(why);
      return;
    }
    if (!offer_ || offer_->alternative < 0) return;
    d_.reasons.push_back(fmt::format(
        "of {} alternatives the cloud takes {}: {}, on {} ({})", spec_.accelerators.size(),
        spec_.ordered ? "the first one offered, in the order given" : "the cheapest",
        name(offer_->alternative), offer_->instance->name, fmt::join(offer_->compared, "; ")));
  }

  // A cloud-only accelerator (TPU, Inferentia, Trainium) that no catalog instance offers
  // has nowhere to run.
  void check_cloud_only() {
    if (!d_.placeable || d_.environment != Environment::kCloud || offer_) return;
    for (const auto& a : spec_.accelerators) {
      const GpuModel* m = a.any_model() ? nullptr : cfg_.catalog.find_gpu(a.model);
      if (!m || !m->cloud_only()) return;
    }
    if (spec_.accelerators.empty()) return;
    d_.placeable = false;
    d_.reasons.insert(d_.reasons.begin() + static_cast<long>(prefix_reasons()),
                      fmt::format("cannot place: {}: only a cloud offers it, and {}", fit_.why_not,
                                  why_no_cloud_));
  }

  Decision finish() {
    check_cloud_only();
    explain_alternatives();
    return std::move(d_);
  }

  const JobSpec& spec_;
  const Config& cfg_;
  LocalFit fit_;
  std::optional<CloudOffer> offer_;
  std::string why_no_cloud_;
  Decision d_;
};

}  // namespace

Decision decide(const JobSpec& spec, const Config& cfg) { return Tree(spec, cfg).run(); }

}  // namespace hylab::placement
