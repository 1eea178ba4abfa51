// The cost model. Local: the hardware amortised over its service life plus electricity
// at busy and idle power for the utilisation. Cloud: hourly price x hours, on-demand or
// spot. Break-even: months until the hardware has paid for itself against the cloud
// price of the same work. Pure functions of their arguments (no I/O): any thread.
#pragma once

#include <optional>

#include "common/units.h"

namespace hylab::placement {

struct LocalCostInputs {
  double hardware_usd = 0;
  double service_life_months = 36;
  double busy_watts = 0;
  double idle_watts = 0;
  double usd_per_kwh = 0;
};

// Amortised hardware per hour of wall time: hardware / (life x 730 h).
double hardware_usd_per_hour(const LocalCostInputs& in);
// Electricity per hour at a utilisation u in [0, 1]: (busy x u + idle x (1 - u)) kW x price.
double electricity_usd_per_hour(const LocalCostInputs& in, double utilisation);
// A job on a `share` of the lab (0..1] for `hours`: share x hours x (amortised hardware
// + busy electricity). The hardware is counted whether or not the lab would be idle.
double local_job_usd(const LocalCostInputs& in, double share, double hours);

struct Breakeven {
  double utilisation = 1;              // hours_per_day / 24
  double cloud_monthly_usd = 0;        // price x hours_per_day x 730/24
  double electricity_monthly_usd = 0;  // at busy power for the busy hours, idle for the rest
  double amortised_monthly_usd = 0;    // hardware / service life
  double local_monthly_usd = 0;        // amortised + electricity
  double savings_monthly_usd = 0;      // cloud - electricity: what the purchase earns back
  std::optional<double> months;        // hardware / savings; empty when it never pays back
};

Breakeven breakeven(const LocalCostInputs& in, double cloud_usd_per_hour, double hours_per_day);

// The utilisation (0..1] at which the hardware pays back in exactly `months`, or
// nothing when no utilisation achieves it (even 24/7 is slower, or the cloud is
// cheaper than the electricity).
std::optional<double> utilisation_for_breakeven(const LocalCostInputs& in,
                                                double cloud_usd_per_hour, double months);

}  // namespace hylab::placement
