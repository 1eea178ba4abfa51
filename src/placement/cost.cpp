#include "placement/cost.h"

namespace hylab::placement {

double hardware_usd_per_hour(const LocalCostInputs& in) {
  if (in.service_life_months <= 0) return 0;
  return in.hardware_usd / (in.service_life_months * kHoursPerMonth);
}

double electricity_usd_per_hour(const LocalCostInputs& in, double utilisation) {
  double kw = (in.busy_watts * utilisation + in.idle_watts * (1 - utilisation)) / 1000.0;
  return kw * in.usd_per_kwh;
}

double local_job_usd(const LocalCostInputs& in, double share, double hours) {
  return share * hours * (hardware_usd_per_hour(in) + electricity_usd_per_hour(in, 1.0));
}

Breakeven breakeven(const LocalCostInputs& in, double cloud_usd_per_hour, double hours_per_day) {
  Breakeven b;
  b.utilisation = hours_per_day / 24.0;
  b.cloud_monthly_usd = cloud_usd_per_hour * kHoursPerMonth * b.utilisation;
  b.electricity_monthly_usd = electricity_usd_per_hour(in, b.utilisation) * kHoursPerMonth;
  b.amortised_monthly_usd =
      in.service_life_months > 0 ? in.hardware_usd / in.service_life_months : 0;
  b.local_monthly_usd = b.amortised_monthly_usd + b.electricity_monthly_usd;
  b.savings_monthly_usd = b.cloud_monthly_usd - b.electricity_monthly_usd;
  if (b.savings_monthly_usd > 0) b.months = in.hardware_usd / b.savings_monthly_usd;
  return b;
}

std::optional<double> utilisation_for_breakeven(const LocalCostInputs& in,
                                                double cloud_usd_per_hour, double months) {
  // hardware / (730 x (u x price - (busy u + idle (1 - u)) kWh)) = months, solved for u.
  double busy_kw_usd = in.busy_watts / 1000.0 * in.usd_per_kwh;
  double idle_kw_usd = in.idle_watts / 1000.0 * in.usd_per_kwh;
  double slope = cloud_usd_per_hour - busy_kw_usd + idle_kw_usd;
  if (months <= 0 || slope <= 0) return std::nullopt;
  double u = (in.hardware_usd / (kHoursPerMonth * months) + idle_kw_usd) / slope;
  if (u <= 0 || u > 1) return std::nullopt;
  return u;
}

}  // namespace hylab::placement
