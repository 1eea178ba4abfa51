// The placement engine: the guide's decision tree, in its order, over one job and the
// lab. It does no I/O: it takes values and returns a Decision that carries the
// environment, the rule that decided, every rule checked on the way with its inputs,
// and the estimated cost on each side. The CLI, the server and the tests all call
// decide(). Pure: any thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/config.h"
#include "common/job_spec.h"
#include "placement/cost.h"
#include "placement/resources.h"

namespace hylab::placement {

enum class Environment { kLocal, kCloud, kHybrid };
std::string_view to_string(Environment e);

// Rule names, stable for scripts (the JSON `rule` field).
namespace rule {
inline constexpr std::string_view kSensitiveData = "sensitive-data";
inline constexpr std::string_view kDevelopment = "development";
inline constexpr std::string_view kBeyondCapacity = "beyond-capacity";
inline constexpr std::string_view kDataMatrix = "data-matrix";
inline constexpr std::string_view kOneTimeLarge = "one-time-large";
inline constexpr std::string_view kProductionInference = "production-inference";
inline constexpr std::string_view kContinuous = "continuous";
inline constexpr std::string_view kGlobalReach = "global-reach";
inline constexpr std::string_view kDefaultLocal = "default-local";
inline constexpr std::string_view kBurst = "burst";  // the control plane's, not decide()'s
}  // namespace rule

// One question of the tree as it was asked of this job.
struct Check {
  std::string rule;
  std::string question;
  bool answer = false;
  std::vector<std::pair<std::string, std::string>> inputs;  // name -> value, in order
  std::string note;                                         // what followed from the answer
};

struct LocalCost {
  bool fits = false;
  std::string why_not;
  std::string allocation;
  double share = 0;
  double hours = 0;  // run time on the lab (the job's hours scaled by relative speed)
  double usd = 0;
};

struct CloudCost {
  bool available = false;
  std::string why_not;
  std::string provider;
  std::string instance;
  int count = 0;
  double hours = 0;
  double usd_per_hour = 0;
  double spot_usd_per_hour = 0;
  double usd_on_demand = 0;
  double usd_spot = 0;
  std::string note;
  std::string source;
  std::string date;
};

struct CostEstimate {
  // The job's `hours`; when it gave none, figures are for one hour (per_hour = true).
  double hours = 1;
  bool per_hour = true;
  LocalCost local;
  CloudCost cloud;
};

struct Decision {
  std::string name;
  std::string file;
  bool placeable = true;  // false: exit code 3, with the reason in `reasons`
  Environment environment = Environment::kLocal;
  std::string rule;
  bool spot = false;
  std::vector<std::string> reasons;
  std::vector<Check> path;
  CostEstimate cost;
  std::optional<double> breakeven_months;  // for continuous work
  std::optional<std::string> matrix_cell;  // for data processing: the matrix's answer
};

Decision decide(const JobSpec& spec, const Config& cfg);

// The lab's running-cost inputs scaled to a share of it.
LocalCostInputs lab_cost_inputs(const Lab& lab, double share);

}  // namespace hylab::placement
