#include "placement/engine.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "../test_util.h"

namespace hylab::placement {
namespace {

using hylab::testing::config_from;
using hylab::testing::kTwoGpuLab;
using hylab::testing::spec_from;
using ::testing::HasSubstr;

class EngineTest : public ::testing::Test {
 protected:
  Decision place(const std::string& spec_yaml) { return decide(spec_from(spec_yaml, cfg_), cfg_); }
  static std::vector<std::string> rules(const Decision& d) {
    std::vector<std::string> out;
    for (const auto& c : d.path) out.push_back(c.rule);
    return out;
  }
  static std::string all_reasons(const Decision& d) {
    std::string out;
    for (const auto& r : d.reasons) out += r + "\n";
    return out;
  }
  Config cfg_ = config_from(kTwoGpuLab);
};

// Rule 1: sensitive or regulated data -> local, whatever the later rules would say.
TEST_F(EngineTest, SensitiveDataStaysLocalAheadOfEveryOtherRule) {
  Decision d = place(R"(
category: training
resources: {accelerators: RTX4090:2, use_spot: true}
data: {sensitivity: sensitive, size: 2TB}
hours: 100
pattern: one-time
reach: global
)");
  EXPECT_TRUE(d.placeable);
  EXPECT_EQ(d.environment, Environment::kLocal);
  EXPECT_EQ(d.rule, rule::kSensitiveData);
  EXPECT_FALSE(d.spot);
  EXPECT_EQ(rules(d), std::vector<std::string>{"sensitive-data"});
  EXPECT_EQ(d.path[0].inputs[0],
            (std::pair<std::string, std::string>{"data.sensitivity", "sensitive"}));
  EXPECT_THAT(all_reasons(d), HasSubstr("use_spot/instance_type ignored"));
}

TEST_F(EngineTest, RegulatedDataThatCannotFitIsNotSentOut) {
  Decision d = place("resources: {accelerators: A100-80GB:8}\ndata: {sensitivity: regulated}\n");
  EXPECT_FALSE(d.placeable);
  EXPECT_EQ(d.environment, Environment::kLocal);
  EXPECT_EQ(d.rule, rule::kSensitiveData);
  EXPECT_THAT(d.reasons.at(1), HasSubstr("cannot place: regulated data never leaves the lab"));
  EXPECT_THAT(d.reasons.at(1),
              HasSubstr("needs 8 GPUs with at least 80 GB each (A100-80GB); the lab has 0 such"));
}

TEST_F(EngineTest, SensitiveButSlowSaysHowLongLocally) {
  cfg_ = config_from("lab: {gpus: [{model: RTX3090, count: 1}], cpus: 16}");
  Decision d = place(
      "category: training\nresources: {accelerators: RTX4090:1}\ndata: {sensitivity: "
      "sensitive}\nhours: 10\n");
  EXPECT_TRUE(d.placeable);
  EXPECT_EQ(d.environment, Environment::kLocal);
  // 10 h x 165 / 71 TFLOPS = 23.24 h
  EXPECT_NEAR(d.cost.local.hours, 10 * 165.0 / 71, 1e-9);
  EXPECT_THAT(all_reasons(d),
              HasSubstr("runs on 1x RTX3090 in about 23h14m, 2.3x the time on the requested GPUs"));
}

// Rule 2: development -> local.
TEST_F(EngineTest, DevelopmentIsLocal) {
  Decision d =
      place("category: development\nresources: {accelerators: RTX4090:1}\nreach: global\n");
  EXPECT_EQ(d.environment, Environment::kLocal);
  EXPECT_EQ(d.rule, rule::kDevelopment);
  EXPECT_EQ(rules(d), (std::vector<std::string>{"sensitive-data", "development"}));
}

TEST_F(EngineTest, DevelopmentThatDoesNotFitFallsThroughToCapacity) {
  Decision d = place("category: development\nresources: {accelerators: H100:1}\n");
  EXPECT_EQ(d.environment, Environment::kCloud);
  EXPECT_EQ(d.rule, rule::kBeyondCapacity);
  EXPECT_EQ(d.path[1].note, "local, but it does not fit the lab: continue");
  EXPECT_FALSE(d.spot);  // development is not restartable batch work
}

// Rule 3: beyond the lab's capacity -> cloud.
TEST_F(EngineTest, BeyondCapacityGoesToCloudOnSpotForTraining) {
  Decision d = place("category: training\nresources: {accelerators: A100-80GB:8}\nhours: 10\n");
  EXPECT_EQ(d.environment, Environment::kCloud);
  EXPECT_EQ(d.rule, rule::kBeyondCapacity);
  EXPECT_TRUE(d.spot);
  EXPECT_EQ(d.path[2].inputs[2].first, "shortfall");
  // Cheapest 8x A100 80GB: Azure ND96amsr A100 v4 at $32.77/h; spot 70% off.
  EXPECT_EQ(d.cost.cloud.instance, "Standard_ND96amsr_A100_v4");
  EXPECT_NEAR(d.cost.cloud.usd_on_demand, 327.7, 1e-9);
  EXPECT_NEAR(d.cost.cloud.usd_spot, 327.7 * 0.3, 1e-9);
  EXPECT_FALSE(d.cost.local.fits);
}

TEST_F(EngineTest, HostResourcesCountTowardsCapacity) {
  Decision d = place("category: training\nresources: {cpus: 64, memory: 512}\n");
  EXPECT_EQ(d.rule, rule::kBeyondCapacity);
  EXPECT_THAT(d.cost.local.why_not, HasSubstr("needs 64 CPUs; the lab has 32"));
  EXPECT_THAT(d.cost.local.why_not, HasSubstr("needs 512 GiB memory; the lab has 128 GiB"));
}

TEST_F(EngineTest, UseSpotInTheSpecWins) {
  Decision d =
      place("category: training\nresources: {accelerators: A100-80GB:8, use_spot: false}\n");
  EXPECT_EQ(d.environment, Environment::kCloud);
  EXPECT_FALSE(d.spot);
  EXPECT_THAT(all_reasons(d), HasSubstr("spot declined by resources.use_spot"));
}

// Rule 4: a one-time large job -> cloud on spot.
TEST_F(EngineTest, OneTimeLargeJobGoesToSpot) {
  Decision d = place(
      "category: training\nresources: {accelerators: RTX4090:2}\nhours: 30\npattern: one-time\n");
  EXPECT_EQ(d.environment, Environment::kCloud);
  EXPECT_EQ(d.rule, rule::kOneTimeLarge);
  EXPECT_TRUE(d.spot);
  EXPECT_TRUE(d.cost.local.fits);  // it fits; it is just long
}

TEST_F(EngineTest, OneTimeLargeBoundaryIsStrictlyOverTheLimit) {
  EXPECT_EQ(place("category: training\nresources: {accelerators: RTX4090:2}\nhours: 24\n").rule,
            rule::kDefaultLocal);
  EXPECT_EQ(place("category: training\nresources: {accelerators: RTX4090:2}\nhours: 24.1\n").rule,
            rule::kOneTimeLarge);
  // Large data alone makes a one-time job large.
  EXPECT_EQ(
      place("category: training\nresources: {accelerators: RTX4090:1}\ndata: {size: 200GB}\n").rule,
      rule::kOneTimeLarge);
  // A recurring job is never "one-time large".
  EXPECT_EQ(place("category: training\nresources: {accelerators: RTX4090:2}\nhours: 30\npattern: "
                  "recurring\n")
                .rule,
            rule::kDefaultLocal);
}

// Production inference -> hybrid.
TEST_F(EngineTest, ContinuousInferenceIsHybrid) {
  Decision d = place(
      "category: inference\nresources: {accelerators: RTX4090:1}\npattern: continuous\nreach: "
      "global\n");
  EXPECT_EQ(d.environment, Environment::kHybrid);
  EXPECT_EQ(d.rule, rule::kProductionInference);
  EXPECT_FALSE(d.spot);
  EXPECT_TRUE(d.breakeven_months.has_value());
}

// Rule 5: continuous 24/7 -> local if break-even is under the limit, else cloud.
TEST_F(EngineTest, ContinuousStaysLocalWhenTheLabPaysBackInTime) {
  Decision d =
      place("category: training\nresources: {accelerators: RTX4090:1}\npattern: continuous\n");
  EXPECT_EQ(d.environment, Environment::kLocal);
  EXPECT_EQ(d.rule, rule::kContinuous);
  ASSERT_TRUE(d.breakeven_months);
  EXPECT_LT(*d.breakeven_months, 6);
}

TEST_F(EngineTest, ContinuousGoesToCloudWhenBreakevenIsOverTheLimit) {
  cfg_ = config_from(std::string(kTwoGpuLab) + "policy: {breakeven_limit_months: 1}\n");
  Decision d =
      place("category: training\nresources: {accelerators: RTX4090:1}\npattern: continuous\n");
  EXPECT_EQ(d.environment, Environment::kCloud);
  EXPECT_EQ(d.rule, rule::kContinuous);
  EXPECT_FALSE(d.spot);
  // Hand check: half the lab ($2,600, 550 W busy, 60 W idle) against the cheapest cloud
  // stand-in for one RTX4090 (g2-standard-4, one L4, at 121/165 of the speed).
  double cloud = 0.7068 / (121.0 / 165);
  double savings = 730 * (cloud - 0.55 * 0.15);
  EXPECT_NEAR(*d.breakeven_months, 2600 / savings, 1e-9);
}

// Rule 6: global reach -> cloud; otherwise local.
TEST_F(EngineTest, GlobalReachGoesToCloudOnDemand) {
  Decision d = place("category: inference\nresources: {accelerators: L4:1}\nreach: global\n");
  EXPECT_EQ(d.environment, Environment::kCloud);
  EXPECT_EQ(d.rule, rule::kGlobalReach);
  EXPECT_FALSE(d.spot);
  EXPECT_EQ(rules(d), (std::vector<std::string>{"sensitive-data", "development", "beyond-capacity",
                                                "one-time-large", "production-inference",
                                                "continuous", "global-reach"}));
}

TEST_F(EngineTest, OtherwiseLocal) {
  Decision d = place("category: inference\nresources: {accelerators: RTX4090:1}\n");
  EXPECT_EQ(d.environment, Environment::kLocal);
  EXPECT_EQ(d.rule, rule::kDefaultLocal);
  EXPECT_EQ(d.path.size(), 8u);
}

TEST_F(EngineTest, MissingCategoryIsSaid) {
  Decision d = place("resources: {accelerators: RTX4090:1}\n");
  EXPECT_EQ(d.reasons.front(), "category not set: treated as training (set category: to be sure)");
}

// Category 4: the data matrix, its four cells and its boundary.
TEST_F(EngineTest, DataMatrixFourCells) {
  Decision small_public =
      place("category: data-processing\ndata: {size: 50GB, sensitivity: public}\n");
  EXPECT_EQ(small_public.environment, Environment::kLocal);
  EXPECT_EQ(small_public.rule, rule::kDataMatrix);
  EXPECT_EQ(*small_public.matrix_cell, "< threshold, not sensitive: local (cost-effective)");

  Decision big_public =
      place("category: data-processing\ndata: {size: 500GB, sensitivity: public}\n");
  EXPECT_EQ(big_public.environment, Environment::kCloud);
  EXPECT_EQ(big_public.rule, rule::kDataMatrix);
  EXPECT_TRUE(big_public.spot);
  EXPECT_EQ(*big_public.matrix_cell, "> threshold, not sensitive: cloud (scalable storage)");

  Decision small_sensitive =
      place("category: data-processing\ndata: {size: 50GB, sensitivity: sensitive}\n");
  EXPECT_EQ(small_sensitive.environment, Environment::kLocal);
  EXPECT_EQ(*small_sensitive.matrix_cell, "< threshold, sensitive: local");

  Decision big_sensitive =
      place("category: data-processing\ndata: {size: 500GB, sensitivity: regulated}\n");
  EXPECT_EQ(big_sensitive.environment, Environment::kLocal);
  EXPECT_EQ(*big_sensitive.matrix_cell, "> threshold, sensitive: local (with cloud backup)");
  EXPECT_THAT(all_reasons(big_sensitive), HasSubstr("back up encrypted copies only"));
}

TEST_F(EngineTest, DataMatrixBoundaryIsOverTheThreshold) {
  EXPECT_EQ(place("category: data-processing\ndata: {size: 100GB}\n").environment,
            Environment::kLocal);
  EXPECT_EQ(place("category: data-processing\ndata: {size: 100000000001B}\n").environment,
            Environment::kCloud);
  cfg_ = config_from(std::string(kTwoGpuLab) + "policy: {large_data_threshold: 1TB}\n");
  EXPECT_EQ(place("category: data-processing\ndata: {size: 500GB}\n").environment,
            Environment::kLocal);
}

TEST_F(EngineTest, DataProcessingBeyondCapacityStillGoesToCloud) {
  Decision d = place("category: data-processing\nresources: {cpus: 128}\ndata: {size: 10GB}\n");
  EXPECT_EQ(d.rule, rule::kBeyondCapacity);
}

TEST_F(EngineTest, CostsOnBothSides) {
  Decision d = place(
      "category: training\nresources: {accelerators: RTX4090:1}\nhours: 10\npattern: recurring\n");
  EXPECT_FALSE(d.cost.per_hour);
  ASSERT_TRUE(d.cost.local.fits);
  // Half the lab for 10 h: 0.5 x 10 x ($5,200 / 26,280 + 1.1 kW x $0.15)
  EXPECT_NEAR(d.cost.local.usd, 0.5 * 10 * (5200.0 / 26280 + 0.165), 1e-9);
  ASSERT_TRUE(d.cost.cloud.available);
  EXPECT_EQ(d.cost.cloud.instance, "g2-standard-4");
  EXPECT_NEAR(d.cost.cloud.hours, 10 * 165.0 / 121, 1e-9);
  EXPECT_NEAR(d.cost.cloud.usd_on_demand, 0.7068 * 10 * 165.0 / 121, 1e-9);
}

TEST_F(EngineTest, NamedInstanceAndProviderArePriced) {
  Decision d = place(
      "category: training\nresources: {accelerators: A100:8, instance_type: p4d.24xlarge}\nhours: "
      "2\n");
  EXPECT_EQ(d.cost.cloud.instance, "p4d.24xlarge");
  EXPECT_NEAR(d.cost.cloud.usd_on_demand, 65.54, 1e-9);
  Decision gcp =
      place("category: training\nresources: {accelerators: A100:8, cloud: gcp}\nhours: 1\n");
  EXPECT_EQ(gcp.cost.cloud.instance, "a2-highgpu-8g");
}

TEST_F(EngineTest, WithoutALabOnlyTheCloudIsLeft) {
  cfg_ = Config{};
  EXPECT_EQ(place("category: training\nresources: {accelerators: T4:1}\n").environment,
            Environment::kCloud);
  Decision d = place("data: {sensitivity: sensitive}\n");
  EXPECT_FALSE(d.placeable);
  EXPECT_THAT(all_reasons(d), HasSubstr("the config describes no lab"));
}

}  // namespace
}  // namespace hylab::placement
