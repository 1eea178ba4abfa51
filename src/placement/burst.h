// Cloud targets for a job and the burst rule. choose_target() picks the `clouds:` target
// that can hold the job (its instance has the GPUs, the job's `cloud` provider if it names
// one) at the lowest price per hour (the spot price for spot jobs on a target with a spot
// partition); targets without a priced instance come last. burst() turns a job placed on
// the lab into a cloud job when its wait for the lab's GPUs would pass the policy's
// max_local_wait, saying so in its reasons with both costs. Pure: any thread.
#pragma once

#include <string>

#include "common/config.h"
#include "common/job_spec.h"
#include "placement/engine.h"

namespace hylab::placement {

struct TargetChoice {
  const CloudTarget* target = nullptr;  // nothing: no target can take the job (see why)
  const Instance* instance = nullptr;   // what prices a node of it, if the target names one
  double usd_per_hour = 0;              // per node, at the price this job pays
  std::string why;
};

TargetChoice choose_target(const JobSpec& spec, bool spot, const Config& cfg);

struct LabWait {
  double hours = 0;
  bool known = true;
  std::string detail;
};

// True when the decision was changed to the cloud. `cloud_budget_left` false: the monthly
// cloud budget is spent, so the job stays on the lab (and its reasons say why).
bool burst(Decision& d, const JobSpec& spec, const LabWait& wait, bool cloud_budget_left,
           const Config& cfg);

}  // namespace hylab::placement
