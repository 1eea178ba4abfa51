#include "common/gpu.h"

#include <gtest/gtest.h>

#include "common/units.h"

namespace hylab {
namespace {

TEST(GpuDiscovery, NvmlNamesMapToCatalogModels) {
  const Catalog& c = builtin_catalog();
  EXPECT_EQ(catalog_model_for("NVIDIA GeForce RTX 4090", 24 * kGiB, c), "RTX4090");
  EXPECT_EQ(catalog_model_for("NVIDIA A100-SXM4-80GB", 80 * kGiB, c), "A100-80GB");
  EXPECT_EQ(catalog_model_for("NVIDIA A100-SXM4-40GB", 40 * kGiB, c), "A100");
  EXPECT_EQ(catalog_model_for("NVIDIA H100 80GB HBM3", 80 * kGiB, c), "H100");
  EXPECT_EQ(catalog_model_for("NVIDIA H200", 141 * kGB, c), "H200");
  EXPECT_EQ(catalog_model_for("Tesla T4", 15 * kGiB, c), "T4");
  EXPECT_EQ(catalog_model_for("NVIDIA L4", 23 * kGiB, c), "L4");
  EXPECT_EQ(catalog_model_for("NVIDIA L40S", 46 * kGiB, c), "L40S");  // not L4
  EXPECT_EQ(catalog_model_for("NVIDIA RTX A6000", 48 * kGiB, c), "A6000");
  EXPECT_EQ(catalog_model_for("Mystery Accelerator 9000", 8 * kGiB, c), "Mystery Accelerator 9000");
}

TEST(GpuDiscovery, WithoutTheDriverSaysWhyAndFindsNothing) {
  GpuDiscovery d = discover_gpus(builtin_catalog());
  if (d.nvml) GTEST_SKIP() << "this machine has NVML: " << d.detail;
  EXPECT_TRUE(d.gpus.empty());
  EXPECT_FALSE(d.detail.empty());
}

}  // namespace
}  // namespace hylab
