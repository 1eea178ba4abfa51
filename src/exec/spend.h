// What jobs cost, for `hylab cost report`, the control plane's /metrics and the monthly
// cloud budget. A cloud job's cost is what its executor recorded (elapsed x the target
// instance's price, the spot price while it ran on spot, across preemptions); a lab job's
// is its share of the lab's running cost (the placement decision's local rate) x the time
// it ran. A job's cost is spread evenly over the hours it ran, so a job that crosses
// midnight counts on both days. Days and months are in local time. Pure: any thread.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/config.h"
#include "store/store.h"

namespace hylab::exec {

// The cost of one job up to `now` (running jobs: so far).
double job_cost_usd(const store::JobRecord& job, double now);

// Local midnight of the day `t` falls in, and of the first day of its month (Unix seconds).
double day_start(double t);
double month_start(double t);
// "2026-11-29" (local time).
std::string day_label(double t);

struct JobSpend {
  std::int64_t id = 0;
  std::string name;
  std::string environment;  // local | cloud | hybrid
  std::string target;       // cloud target, if any
  std::string state;
  bool spot = false;
  int restarts = 0;
  double hours = 0;  // run time inside the report's window
  double usd = 0;    // cost inside the window
};

struct DaySpend {
  std::string day;
  std::map<std::string, double> usd_by_environment;
};

struct SpendReport {
  double since = 0;
  double until = 0;
  double total_usd = 0;
  std::map<std::string, double> usd_by_environment;
  std::vector<DaySpend> days;  // oldest first; days without spend left out
  std::vector<JobSpend> jobs;  // by id
};

// Spend inside [since, now] of `jobs` (those store::jobs_active_since(since) returns).
SpendReport spend_report(const std::vector<store::JobRecord>& jobs, double since, double now);

// Cloud spend inside the calendar month of `now`.
double cloud_spend_this_month(const std::vector<store::JobRecord>& jobs, double now);
// The same, from the store.
double month_cloud_spend(const store::Store& store, double now);
// This month's cloud spend when the policy sets a monthly budget and it is spent; nothing
// otherwise. The executor holds new cloud jobs on it, the control plane stops bursting.
std::optional<double> budget_spent(const store::Store& store, const Policy& policy, double now);

}  // namespace hylab::exec
