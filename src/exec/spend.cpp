// What jobs cost (see spend.h).
#include "exec/spend.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/json.hpp>
#include <ctime>

namespace hylab::exec {

namespace json = boost::json;

namespace {

std::tm local_tm(double t) {
  std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  localtime_r(&tt, &tm);
  return tm;
}

double midnight(std::tm tm) {
  tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
  tm.tm_isdst = -1;
  return static_cast<double>(std::mktime(&tm));
}

double next_day(double t) {
  std::tm tm = local_tm(t);
  tm.tm_mday += 1;
  return midnight(tm);
}

// The lab's running cost of a local job per hour, from its placement decision.
double local_usd_per_hour(const std::string& decision) {
  boost::system::error_code ec;
  // Lenient: a decision stored before job names were checked may name its job with bytes
  // that are not UTF-8, and its cost is still its cost.
  json::parse_options lenient;
  lenient.allow_invalid_utf8 = true;
  json::value v = json::parse(decision, ec, {}, lenient);
  if (ec || !v.is_object()) return 0;
  const json::value* local = v.find_pointer("/cost/local", ec);
  if (!local || !local->is_object()) return 0;
  const auto& o = local->as_object();
  auto num = [&](const char* k) {
    auto it = o.find(k);
    return it != o.end() && it->value().is_number() ? it->value().to_number<double>() : 0.0;
  };
  double hours = num("hours");
  return hours > 0 ? num("usd") / hours : 0;
}

struct Span {
  double start = 0, end = 0;
};

std::optional<Span> ran(const store::JobRecord& j, double now) {
  if (!j.started_at) return std::nullopt;
  double end = j.ended_at.value_or(now);  // running: up to now
  return Span{*j.started_at, std::max(*j.started_at, end)};
}

// The share of a job's cost inside [from, to].
double cost_within(double cost, Span s, double from, double to) {
  double lo = std::max(s.start, from), hi = std::min(s.end, to);
  if (s.end <= s.start) return s.start >= from && s.start <= to ? cost : 0;
  if (hi <= lo) return 0;
  return cost * (hi - lo) / (s.end - s.start);
}

}  // namespace

double day_start(double t) { return midnight(local_tm(t)); }

double month_start(double t) {
  std::tm tm = local_tm(t);
  tm.tm_mday = 1;
  return midnight(tm);
}

std::string day_label(double t) {
  std::tm tm = local_tm(t);
  return fmt::format("{:04}-{:02}-{:02}", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
}

double job_cost_usd(const store::JobRecord& job, double now) {
  if (!job.target.empty() || job.environment == "cloud") return job.cost_usd.value_or(0);
  auto s = ran(job, now);
  if (!s) return 0;
  return local_usd_per_hour(job.decision) * (s->end - s->start) / 3600;
}

SpendReport spend_report(const std::vector<store::JobRecord>& jobs, double since, double now) {
  SpendReport r;
  r.since = since;
  r.until = now;
  std::map<double, DaySpend> days;
  for (const auto& j : jobs) {
    auto s = ran(j, now);
    if (!s || s->end < since) continue;
    double cost = job_cost_usd(j, now);
    JobSpend js;
    js.id = j.id;
    js.name = j.name;
    js.environment = j.environment;
    js.target = j.target;
    js.state = std::string(store::to_string(j.state));
    js.spot = j.spot;
    js.restarts = j.restarts;
    js.hours = std::max(0.0, std::min(s->end, now) - std::max(s->start, since)) / 3600;
    js.usd = cost_within(cost, *s, since, now);
    r.total_usd += js.usd;
    r.usd_by_environment[js.environment] += js.usd;
    // Day by day, from the later of its start and the window's.
    double from = std::max(s->start, since);
    for (double d = day_start(from); d <= std::min(s->end, now);) {
      double nd = next_day(d);
      double part = cost_within(cost, *s, std::max(d, since), std::min(nd, now));
      if (part > 0) {
        auto& day = days[d];
        day.day = day_label(d);
        day.usd_by_environment[js.environment] += part;
      }
      if (nd <= d) break;  // a clock that does not move forward: stop, do not spin
      d = nd;
    }
    r.jobs.push_back(std::move(js));
  }
  for (auto& [t, d] : days) r.days.push_back(std::move(d));
  return r;
}

double cloud_spend_this_month(const std::vector<store::JobRecord>& jobs, double now) {
  double from = month_start(now), total = 0;
  for (const auto& j : jobs) {
    if (j.environment != "cloud" && j.target.empty()) continue;
    auto s = ran(j, now);
    if (!s) continue;
    total += cost_within(job_cost_usd(j, now), *s, from, now);
  }
  return total;
}

double month_cloud_spend(const store::Store& store, double now) {
  auto jobs = store.jobs_active_since(month_start(now));
  return jobs ? cloud_spend_this_month(*jobs, now) : 0;
}

std::optional<double> budget_spent(const store::Store& store, const Policy& policy, double now) {
  if (policy.monthly_cloud_budget_usd <= 0) return std::nullopt;
  double spent = month_cloud_spend(store, now);
  if (spent < policy.monthly_cloud_budget_usd) return std::nullopt;
  return spent;
}

}  // namespace hylab::exec
