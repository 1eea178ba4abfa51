// Placement of SkyPilot's alternatives (sets, lists, any_of, ordered), counts of any model,
// cloud/region pins, services, and accelerators only a cloud has.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "../test_util.h"
#include "placement/burst.h"
#include "placement/engine.h"

namespace hylab::placement {
namespace {

using hylab::testing::config_from;
using hylab::testing::kTwoGpuLab;
using hylab::testing::spec_from;
using ::testing::HasSubstr;
using ::testing::Not;

class AlternativesTest : public ::testing::Test {
 protected:
  Decision place(const std::string& yaml) { return decide(spec_from(yaml, cfg_), cfg_); }
  static std::string reasons(const Decision& d) {
    std::string out;
    for (const auto& r : d.reasons) out += r + "\n";
    return out;
  }
  Config cfg_ = config_from(kTwoGpuLab);
};

TEST_F(AlternativesTest, TheLabRunsTheFirstAlternativeItCanHold) {
  Decision d = place(
      "category: development\nresources:\n  any_of:\n    - accelerators: "
      "A100-80GB:1\n    - accelerators: RTX4090:2\n");
  EXPECT_EQ(d.environment, Environment::kLocal);
  EXPECT_EQ(d.cost.local.allocation, "2x RTX4090");
  EXPECT_THAT(reasons(d), HasSubstr("of 2 alternatives the lab runs the first it can hold: 2x "
                                    "RTX4090 (24 GB each) (resources.any_of[1]), as 2x RTX4090"));
  EXPECT_THAT(reasons(d), HasSubstr("before it: needs 1 GPUs with at least 80 GB each"));
}

TEST_F(AlternativesTest, TheCloudTakesTheCheapestOfAnyOfAndTheFirstOfOrdered) {
  // Beyond the lab either way: 8 GPUs.
  Decision cheapest = place("resources:\n  accelerators: {H100:8, A100:8}\n");
  EXPECT_EQ(cheapest.environment, Environment::kCloud);
  EXPECT_EQ(cheapest.cost.cloud.instance, "Standard_ND96asr_v4");  // 8x A100, the cheapest
  EXPECT_THAT(reasons(cheapest), HasSubstr("of 2 alternatives the cloud takes the cheapest: 8x "
                                           "A100 (40 GB each)"));
  EXPECT_THAT(reasons(cheapest), HasSubstr("8x H100 (80 GB each): a3-highgpu-8g at $88.25/h"));
  Decision first = place("resources:\n  accelerators: [H100:8, A100:8]\n");
  EXPECT_EQ(first.cost.cloud.instance.substr(0, 2), "a3");  // GCP's 8x H100, cheaper of the H100s
  EXPECT_THAT(reasons(first), HasSubstr("the first one offered, in the order given: 8x H100"));
  // The first one offered, even where a later one is cheaper.
  Decision ordered = place(
      "resources:\n  accelerators: A100:8\n  ordered:\n    - {cloud: aws}\n"
      "    - {cloud: azure}\n");
  EXPECT_EQ(ordered.cost.cloud.instance, "p4d.24xlarge");
  EXPECT_THAT(reasons(ordered), HasSubstr("8x A100 (40 GB each) on aws (resources.ordered[0]), on "
                                          "p4d.24xlarge"));
  EXPECT_THAT(reasons(ordered), HasSubstr("on azure: Standard_ND96asr_v4 at $27.20/h"));
}

TEST_F(AlternativesTest, AnAlternativesOwnCpusAndMemoryCount) {
  // The first alternative's GPUs fit the lab, but not its CPUs: the second runs.
  Decision d = place(
      "category: development\nresources:\n  any_of:\n    - {accelerators: "
      "RTX4090:1, cpus: 64}\n    - {accelerators: RTX4090:2, memory: 64GB}\n");
  EXPECT_EQ(d.environment, Environment::kLocal);
  EXPECT_EQ(d.cost.local.allocation, "2x RTX4090");
  EXPECT_THAT(reasons(d), HasSubstr("(resources.any_of[0]): needs 64 CPUs; the lab has 32"));
  // In the cloud, an alternative's own memory rules out the instances too small for it.
  Decision cloud = place(
      "resources:\n  any_of:\n    - {accelerators: L4:1, memory: 150GB}\n"
      "reach: global\n");
  EXPECT_EQ(cloud.cost.cloud.instance, "g6.12xlarge");  // 192 GiB; g6.xlarge has 16
}

TEST_F(AlternativesTest, TheGpusOfSkyPilotsExamplesArePriced) {
  for (auto [model, instance] :
       {std::pair{"A10", "Standard_NV36ads_A10_v5"}, std::pair{"A40", "serverless-a40"},
        std::pair{"L40", "serverless-l40"}}) {
    Decision d = place(std::string("resources: {accelerators: ") + model + ":1}\nreach: global\n");
    EXPECT_EQ(d.environment, Environment::kCloud) << model;
    EXPECT_EQ(d.cost.cloud.instance, instance) << model;
  }
}

TEST_F(AlternativesTest, ACountOfAnyModelTakesTheLabsCardsOrTheCheapestCloudGpu) {
  Decision lab = place("category: development\nresources: {accelerators: 2}\n");
  EXPECT_EQ(lab.environment, Environment::kLocal);
  EXPECT_EQ(lab.cost.local.allocation, "2x RTX4090");
  Decision cloud = place("resources: {accelerators: 1}\nreach: global\n");
  EXPECT_EQ(cloud.environment, Environment::kCloud);
  EXPECT_EQ(cloud.cost.cloud.instance, "g4dn.xlarge");  // one T4, the cheapest GPU
  EXPECT_THAT(cloud.cost.cloud.note, HasSubstr("any GPU model: the cheapest catalog GPU"));
  Decision big = place("resources: {accelerators: 3}\n");
  EXPECT_EQ(big.environment, Environment::kCloud);
  EXPECT_THAT(reasons(big), HasSubstr("needs 3 GPUs of any model; the lab has 2 such"));
}

TEST_F(AlternativesTest, APinSendsTheJobToTheCloudAndSensitiveDataIsRefused) {
  Decision d = place("resources: {accelerators: RTX4090:1, cloud: aws}\n");
  EXPECT_EQ(d.environment, Environment::kCloud);
  EXPECT_EQ(d.rule, rule::kBeyondCapacity);
  EXPECT_EQ(d.cost.cloud.provider, "aws");
  EXPECT_THAT(reasons(d), HasSubstr("pinned to aws: it runs only on a cloud target"));
  Decision cpu = place("resources: {infra: gcp/europe-west4}\n");
  EXPECT_EQ(cpu.environment, Environment::kCloud);
  EXPECT_EQ(cpu.cost.cloud.provider, "gcp");
  EXPECT_THAT(cpu.cost.cloud.note, HasSubstr("priced in us-central1 (the catalog has no "
                                             "europe-west4 price)"));
  Decision secret = place("resources: {cloud: aws}\ndata: {sensitivity: sensitive}\n");
  EXPECT_FALSE(secret.placeable);
  EXPECT_THAT(reasons(secret), HasSubstr("cannot place: sensitive data never leaves the lab"));
  EXPECT_THAT(reasons(secret), HasSubstr("pinned to aws"));
  // The same job written with infra, or only among its alternatives, is refused too.
  for (const char* yaml : {"resources: {infra: aws/us-east-1}\ndata: {sensitivity: regulated}\n",
                           "resources:\n  any_of: [{accelerators: L4, infra: aws}, {accelerators: "
                           "T4, cloud: gcp}]\ndata: {sensitivity: sensitive}\n"}) {
    EXPECT_FALSE(place(yaml).placeable) << yaml;
  }
}

TEST_F(AlternativesTest, TargetsMustDeclareTheProviderAndRegionAJobIsPinnedTo) {
  Config cfg = config_from(std::string(kTwoGpuLab) + R"(
clouds:
  - {name: east, partition: gpu, instance: p4d.24xlarge, region: us-east-1}
  - {name: west, partition: gpu, instance: p4d.24xlarge, region: us-west-2}
  - {name: lambda, partition: gpu, provider: lambda}
)");
  EXPECT_EQ(cfg.clouds[0].provider, "aws");  // from its instance
  auto target = [&](const std::string& yaml) {
    return choose_target(spec_from(yaml, cfg), false, cfg);
  };
  auto t = target("resources: {accelerators: A100:8, infra: aws/us-west-2}\n");
  ASSERT_TRUE(t.target);
  EXPECT_EQ(t.target->name, "west");
  t = target("resources: {accelerators: A100:8, region: eu-west-1}\n");
  EXPECT_FALSE(t.target);
  EXPECT_THAT(t.why, HasSubstr("east (on aws/us-east-1, the job is pinned to */eu-west-1)"));
  t = target("resources: {cloud: lambda}\n");
  ASSERT_TRUE(t.target);
  EXPECT_EQ(t.target->name, "lambda");
}

TEST_F(AlternativesTest, AServiceIsPlacedByTheProductionInferenceRuleAndNeverOnSpot) {
  Decision d = place("service: {readiness_probe: /health}\nresources: {accelerators: RTX4090:1}\n");
  EXPECT_EQ(d.rule, rule::kProductionInference);
  EXPECT_EQ(d.environment, Environment::kHybrid);
  EXPECT_FALSE(d.spot);
  EXPECT_THAT(d.reasons.at(0), HasSubstr("service: an inference service"));
  Decision big = place("service: {replicas: 2}\nresources: {accelerators: H100:8}\n");
  EXPECT_EQ(big.environment, Environment::kCloud);
  EXPECT_FALSE(big.spot);
  Decision asked = place(
      "service: {replicas: 2}\nresources: {accelerators: H100:8, use_spot: "
      "true}\n");
  EXPECT_TRUE(asked.spot);
  // use_spot: false is honoured where the guide would pick spot.
  Decision batch = place("resources: {accelerators: H100:8, use_spot: false}\nhours: 10\n");
  EXPECT_EQ(batch.environment, Environment::kCloud);
  EXPECT_FALSE(batch.spot);
}

TEST_F(AlternativesTest, CloudOnlyAcceleratorsGoToTheCloudOrCannotBePlaced) {
  Decision tpu = place("resources: {accelerators: tpu-v2-8}\n");
  EXPECT_TRUE(tpu.placeable);
  EXPECT_EQ(tpu.environment, Environment::kCloud);
  EXPECT_EQ(tpu.cost.cloud.provider, "gcp");
  EXPECT_THAT(reasons(tpu),
              HasSubstr("tpu-v2-8 is a cloud-only accelerator (tpu): no lab has one"));
  Decision secret = place("resources: {accelerators: tpu-v2-8}\ndata: {sensitivity: sensitive}\n");
  EXPECT_FALSE(secret.placeable);
  Decision aws_tpu = place("resources: {accelerators: tpu-v2-8, cloud: aws}\n");
  EXPECT_FALSE(aws_tpu.placeable);
  EXPECT_THAT(reasons(aws_tpu), HasSubstr("cannot place: "));
  EXPECT_THAT(reasons(aws_tpu), HasSubstr("no catalog instance offers 1x tpu-v2-8"));
  // A TPU is never priced as a GPU's substitute, nor a GPU as a TPU's.
  Decision gpu = place("resources: {accelerators: RTX5090:8}\n");
  EXPECT_THAT(gpu.cost.cloud.note, Not(HasSubstr("tpu")));
}

}  // namespace
}  // namespace hylab::placement
