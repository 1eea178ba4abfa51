// Cloud target choice and the burst rule (placement/burst.h): the cheapest target whose
// instance holds the job, spot prices for spot jobs, and a lab job that would wait past the
// policy's max_local_wait going to the cloud with both costs in its reasons, but never a
// sensitive one, never past the budget, never on an unknown wait.
#include "placement/burst.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "../test_util.h"

namespace hylab::placement {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

const std::string kClouds = R"(
clouds:
  - {name: big, partition: cloud, spot_partition: cloud-spot, instance: p4d.24xlarge}
  - {name: small, partition: cloud, instance: g5.12xlarge}
  - {name: l4, partition: cloud, spot_partition: spot, instance: g6.12xlarge}
)";

Config config() { return testing::config_from(std::string(testing::kTwoGpuLab) + kClouds); }

TEST(ChooseTarget, CheapestTargetThatHoldsTheJob) {
  Config cfg = config();
  // 4x 24 GB fits g5.12xlarge ($5.672/h) and g6.12xlarge ($4.6016/h) and p4d ($32.77/h).
  auto t = choose_target(testing::spec_from("resources: {accelerators: L4:4}\nrun: x\n", cfg),
                         false, cfg);
  ASSERT_TRUE(t.target);
  EXPECT_EQ(t.target->name, "l4");
  EXPECT_DOUBLE_EQ(t.usd_per_hour, 4.6016);
  EXPECT_THAT(t.why, HasSubstr("cheapest of 3 targets"));
  // 8 GPUs: only the p4d target has that many; its spot price for a spot job.
  t = choose_target(testing::spec_from("resources: {accelerators: A100:8}\nrun: x\n", cfg), true,
                    cfg);
  ASSERT_TRUE(t.target);
  EXPECT_EQ(t.target->name, "big");
  EXPECT_DOUBLE_EQ(t.usd_per_hour, cfg.catalog.find_instance("p4d.24xlarge")->spot_usd_per_hour);
  EXPECT_THAT(t.why, HasSubstr("(spot)"));
  // 80 GB GPUs: none of them.
  t = choose_target(testing::spec_from("resources: {accelerators: H100:8}\nrun: x\n", cfg), false,
                    cfg);
  EXPECT_FALSE(t.target);
  EXPECT_THAT(t.why, HasSubstr("no cloud target can hold it: big (p4d.24xlarge has 8x A100"));
  // A provider the job names.
  t = choose_target(
      testing::spec_from("resources: {accelerators: L4:1, cloud: gcp}\nrun: x\n", cfg), false, cfg);
  EXPECT_FALSE(t.target);
  EXPECT_THAT(t.why, HasSubstr("(on aws, the job is pinned to gcp)"));
  Config none = testing::config_from(testing::kTwoGpuLab);
  EXPECT_THAT(choose_target(JobSpec{}, false, none).why,
              HasSubstr("no cloud target is configured"));
}

TEST(Burst, ALongWaitSendsTheJobToTheCloudWithBothCosts) {
  Config cfg = config();
  JobSpec spec =
      testing::spec_from("resources: {accelerators: RTX4090:2}\nhours: 3\nrun: train\n", cfg);
  Decision d = decide(spec, cfg);
  ASSERT_EQ(d.environment, Environment::kLocal);
  ASSERT_TRUE(burst(d, spec, {6.5, true, "the GPUs it needs free in ~6.5 h"}, true, cfg));
  EXPECT_EQ(d.environment, Environment::kCloud);
  EXPECT_EQ(d.rule, "burst");
  EXPECT_FALSE(d.spot);
  const std::string& why = d.reasons.back();
  EXPECT_THAT(why, HasSubstr("burst: the GPUs it needs free in ~6.5 h, longer than the policy's "
                             "max_local_wait (4 h)"));
  // g6.12xlarge (4x L4, 24 GB) holds 2x RTX4090 most cheaply: $4.6016/h x 3 h.
  EXPECT_THAT(why, HasSubstr("cloud target l4 for $13.80 (1 node x 3 h at $4.60/h)"));
  EXPECT_THAT(why, HasSubstr(fmt::format("instead of ${:.2f} on the lab", d.cost.local.usd)));
  EXPECT_EQ(d.path.back().rule, "burst");
  EXPECT_TRUE(d.path.back().answer);
}

TEST(Burst, StaysOnTheLabWhenTheWaitIsShortUnknownOrTheJobMustStay) {
  Config cfg = config();
  JobSpec spec =
      testing::spec_from("resources: {accelerators: RTX4090:2}\nhours: 3\nrun: train\n", cfg);
  Decision d = decide(spec, cfg);
  EXPECT_FALSE(burst(d, spec, {2, true, "the GPUs it needs free in ~2.0 h"}, true, cfg));
  EXPECT_EQ(d.environment, Environment::kLocal);
  EXPECT_THAT(d.reasons.back(), HasSubstr("within the policy's max_local_wait (4 h)"));

  d = decide(spec, cfg);
  EXPECT_FALSE(burst(d, spec, {0, false, "held by jobs without `hours` (job 3)"}, true, cfg));
  EXPECT_THAT(d.reasons.back(), HasSubstr("job 3"));
  EXPECT_EQ(d.environment, Environment::kLocal);

  d = decide(spec, cfg);
  EXPECT_FALSE(burst(d, spec, {9, true, "busy"}, false, cfg));
  EXPECT_THAT(d.reasons.back(), HasSubstr("monthly cloud budget is spent"));

  d = decide(spec, cfg);
  std::size_t reasons = d.reasons.size();
  EXPECT_FALSE(burst(d, spec, {0, true, ""}, true, cfg));  // starts now: nothing to say
  EXPECT_EQ(d.reasons.size(), reasons);

  JobSpec secret = testing::spec_from(
      "resources: {accelerators: RTX4090:2}\ndata: {sensitivity: regulated}\nrun: x\n", cfg);
  d = decide(secret, cfg);
  EXPECT_FALSE(burst(d, secret, {100, true, "busy"}, true, cfg));
  EXPECT_EQ(d.environment, Environment::kLocal);
  for (const auto& r : d.reasons) EXPECT_THAT(r, Not(HasSubstr("burst")));

  Config no_clouds = testing::config_from(testing::kTwoGpuLab);
  d = decide(spec, no_clouds);
  EXPECT_FALSE(burst(d, spec, {9, true, "busy"}, true, no_clouds));
  EXPECT_THAT(d.reasons.back(), HasSubstr("no cloud target is configured"));
}

}  // namespace
}  // namespace hylab::placement
