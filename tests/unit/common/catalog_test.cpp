#include "common/catalog.h"

#include <gtest/gtest.h>

#include "common/units.h"

namespace hylab {
namespace {

TEST(Catalog, BuiltInLoadsWithTheGuidesInstances) {
  const Catalog& c = builtin_catalog();
  // The guide's figures: t3.medium ~$0.04, g4dn.xlarge $0.52, p4d.24xlarge $32.77.
  EXPECT_NEAR(c.find_instance("t3.medium")->usd_per_hour, 0.04, 0.005);
  EXPECT_NEAR(c.find_instance("g4dn.xlarge")->usd_per_hour, 0.52, 0.01);
  EXPECT_DOUBLE_EQ(c.find_instance("p4d.24xlarge")->usd_per_hour, 32.77);
  EXPECT_EQ(c.find_instance("p4d.24xlarge")->gpu_count, 8);
  ASSERT_NE(c.find_instance("p3.8xlarge"), nullptr);
  EXPECT_EQ(c.find_instance("p5.48xlarge")->gpu, "H100");
  // "an A100 80GB at about $2.50/h"
  EXPECT_DOUBLE_EQ(c.find_instance("a100-80gb.1x")->usd_per_hour, 2.50);
  EXPECT_EQ(c.find_instance("a100-80gb.1x")->gpu, "A100-80GB");
}

TEST(Catalog, EveryInstanceHasSourceDateAndSpotPrice) {
  bool gcp = false;
  bool azure = false;
  for (const auto& i : builtin_catalog().instances) {
    EXPECT_FALSE(i.source.empty()) << i.name;
    EXPECT_FALSE(i.date.empty()) << i.name;
    EXPECT_GT(i.usd_per_hour, 0) << i.name;
    EXPECT_NEAR(i.spot_usd_per_hour, i.usd_per_hour * 0.3, 1e-9) << i.name;
    gcp = gcp || i.provider == "gcp";
    azure = azure || i.provider == "azure";
  }
  EXPECT_TRUE(gcp);
  EXPECT_TRUE(azure);
}

TEST(Catalog, GpuLookupByNameOrAliasAnyCase) {
  const Catalog& c = builtin_catalog();
  EXPECT_EQ(c.find_gpu("rtx4090")->name, "RTX4090");
  EXPECT_EQ(c.find_gpu("A100-40GB")->name, "A100");
  EXPECT_EQ(c.find_gpu("RTX4090")->memory_bytes, 24 * kGB);
  EXPECT_DOUBLE_EQ(*c.find_gpu("RTX4090")->price_usd, 1600);  // the guide's figure
  EXPECT_DOUBLE_EQ(*c.find_gpu("RTX4090")->watts, 450);
  EXPECT_EQ(c.find_gpu("A1000"), nullptr);
}

}  // namespace
}  // namespace hylab
