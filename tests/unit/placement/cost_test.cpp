#include "placement/cost.h"

#include <gtest/gtest.h>

namespace hylab::placement {
namespace {

// The guide's RTX 4090: $1,600, 450 W, $0.15/kWh, against a cloud A100 at $2.50/h.
LocalCostInputs guide_4090() { return LocalCostInputs{1600, 36, 450, 0, 0.15}; }

TEST(CostModel, AmortisedHardwareAndElectricityPerHour) {
  EXPECT_NEAR(hardware_usd_per_hour(guide_4090()), 1600.0 / (36 * 730), 1e-12);
  EXPECT_NEAR(electricity_usd_per_hour(guide_4090(), 1.0), 0.0675, 1e-12);
  LocalCostInputs with_idle{1600, 36, 450, 50, 0.15};
  // Half busy: (450 x 0.5 + 50 x 0.5) W = 250 W -> $0.0375/h.
  EXPECT_NEAR(electricity_usd_per_hour(with_idle, 0.5), 0.0375, 1e-12);
}

TEST(CostModel, LocalJobIsShareTimesHoursTimesHourlyCost) {
  LocalCostInputs lab{5200, 36, 1100, 120, 0.15};
  // 0.5 x 10 h x ($5,200 / 26,280 h + 1.1 kW x $0.15) = $1.8143
  EXPECT_NEAR(local_job_usd(lab, 0.5, 10), 5 * (5200.0 / 26280 + 0.165), 1e-9);
  EXPECT_NEAR(local_job_usd(lab, 0.5, 10), 1.8143, 1e-4);
}

TEST(CostModel, GuideBreakevenAt247IsUnderOneMonth) {
  Breakeven b = breakeven(guide_4090(), 2.50, 24);
  EXPECT_NEAR(b.cloud_monthly_usd, 1825, 1e-9);          // the guide's "~$1,800"
  EXPECT_NEAR(b.electricity_monthly_usd, 49.275, 1e-9);  // the guide's "~$50"
  EXPECT_NEAR(b.amortised_monthly_usd, 1600.0 / 36, 1e-9);
  EXPECT_NEAR(b.savings_monthly_usd, 1775.725, 1e-9);
  ASSERT_TRUE(b.months);
  EXPECT_NEAR(*b.months, 1600 / 1775.725, 1e-9);  // 0.90 months, not "3-4"
}

TEST(CostModel, BreakevenAtPartialUse) {
  Breakeven b = breakeven(guide_4090(), 2.50, 8);
  EXPECT_NEAR(b.utilisation, 1.0 / 3, 1e-12);
  EXPECT_NEAR(b.cloud_monthly_usd, 2.5 * 730 / 3, 1e-9);
  EXPECT_NEAR(*b.months, 1600 / (2.5 * 730 / 3 - 0.0675 * 730 / 3), 1e-9);
}

TEST(CostModel, UtilisationAtWhichTheGuides3To4MonthsHold) {
  // 1600 / (730 x u x (2.50 - 0.0675)) = months  =>  u = 1600 / (730 x months x 2.4325)
  EXPECT_NEAR(*utilisation_for_breakeven(guide_4090(), 2.50, 3), 1600 / (730 * 3 * 2.4325), 1e-12);
  EXPECT_NEAR(*utilisation_for_breakeven(guide_4090(), 2.50, 3), 0.3003, 1e-4);
  EXPECT_NEAR(*utilisation_for_breakeven(guide_4090(), 2.50, 4), 0.2253, 1e-4);
  // Round trip: at that utilisation the break-even is exactly 3 months.
  double u = *utilisation_for_breakeven(guide_4090(), 2.50, 3);
  EXPECT_NEAR(*breakeven(guide_4090(), 2.50, 24 * u).months, 3, 1e-9);
  // With idle power the idle hours count against the savings.
  LocalCostInputs idle{1600, 36, 450, 50, 0.15};
  EXPECT_NEAR(*utilisation_for_breakeven(idle, 2.50, 3), (1600 / 2190.0 + 0.0075) / 2.44, 1e-12);
}

TEST(CostModel, NeverPaysBackWhenTheCloudIsCheaperThanPower) {
  EXPECT_FALSE(breakeven(guide_4090(), 0.05, 24).months);
  EXPECT_FALSE(utilisation_for_breakeven(guide_4090(), 0.05, 3));
  // 0.5 months would need over 100% utilisation.
  EXPECT_FALSE(utilisation_for_breakeven(guide_4090(), 2.50, 0.5));
}

}  // namespace
}  // namespace hylab::placement
