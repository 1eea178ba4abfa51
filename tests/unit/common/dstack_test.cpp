// dstack's own task and service files (tests/data/dstack, MPL-2.0), read where their forms
// map cleanly: commands, env, nodes, resources.gpu (names, counts, memory, ranges' lower
// bounds), spot_policy, backends/regions; the rest is named in a warning.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "../test_util.h"
#include "common/job_spec.h"
#include "placement/engine.h"

namespace hylab {
namespace {

using ::testing::HasSubstr;

const std::string kDir = std::string(HYLAB_SOURCE_DIR) + "/tests/data/dstack/";

struct Loaded {
  std::optional<JobSpec> spec;
  std::string diag;
};

Loaded load(const std::string& file) {
  Diagnostics d;
  Loaded l;
  l.spec = load_job_spec_file(kDir + file, builtin_catalog(), d);
  l.diag = d.str();
  EXPECT_TRUE(l.spec) << l.diag;
  EXPECT_FALSE(d.has_errors()) << l.diag;
  return l;
}

TEST(Dstack, ATaskWithAGpuMemoryRangeAndEnvList) {
  auto l = load("examples__fine-tuning__trl__train.dstack.yml");
  ASSERT_TRUE(l.spec);
  const JobSpec& s = *l.spec;
  EXPECT_EQ(s.name, "trl-train");
  ASSERT_EQ(s.accelerators.size(), 1U);
  EXPECT_TRUE(s.accelerators[0].any_model());
  EXPECT_EQ(s.accelerators[0].count, 1);
  EXPECT_EQ(s.accelerators[0].min_memory_bytes, 24'000'000'000ULL);
  EXPECT_EQ(s.envs.at("ACCELERATE_LOG_LEVEL"), "info");
  EXPECT_FALSE(s.envs.at("WANDB_API_KEY").has_value());  // taken from the environment
  EXPECT_THAT(s.run, HasSubstr("pip install peft\n"));
  EXPECT_THAT(s.run, HasSubstr("accelerate launch --config_file"));
  EXPECT_THAT(l.diag, HasSubstr("warning: python: not acted on"));
  EXPECT_THAT(l.diag, HasSubstr("warning: resources.shm_size: not acted on"));
  // Placed: the lab's 24 GB cards hold it.
  Config cfg = testing::config_from(testing::kTwoGpuLab);
  auto d = placement::decide(s, cfg);
  EXPECT_TRUE(d.cost.local.fits) << d.cost.local.why_not;
}

TEST(Dstack, AServiceIsAnInferenceServiceAndRangesAskForTheirLowerBound) {
  auto svc = load("examples__deployment__vllm__serve.dstack.yml");
  ASSERT_TRUE(svc.spec);
  EXPECT_TRUE(svc.spec->service);
  EXPECT_EQ(svc.spec->category, Category::kInference);
  EXPECT_THAT(svc.diag, HasSubstr("memory 24GB: taken as at least 24GB a card"));
  EXPECT_THAT(svc.diag, HasSubstr("warning: image: not acted on"));
  auto multi = load("examples__distributed-training__torchrun__.dstack.yml");
  ASSERT_TRUE(multi.spec);
  EXPECT_EQ(multi.spec->num_nodes, 2);
  EXPECT_EQ(multi.spec->accelerators.at(0).count, 1);
  EXPECT_THAT(multi.diag, HasSubstr("count 1..8: a range asks for its lower bound, 1 GPU a node"));
  auto qlora = load("examples__fine-tuning__qlora__train.dstack.yml");
  ASSERT_TRUE(qlora.spec);
  EXPECT_EQ(qlora.spec->accelerators.at(0).min_memory_bytes, 16'000'000'000ULL);
  auto tpu = load("examples__fine-tuning__tpu__train.dstack.yml");
  ASSERT_TRUE(tpu.spec);
  EXPECT_EQ(tpu.spec->accelerators.at(0).model, "tpu-v5litepod-8");
}

TEST(Dstack, NamesCountsSpotAndBackendsMapToSkyPilotsMeaning) {
  Diagnostics d;
  auto s = load_job_spec_text(
      "type: task\ncommands: [echo hi]\nresources: {gpu: 'A100,H100:2', cpu: 8.., memory: "
      "64GB..}\nspot_policy: spot\nbackends: [aws, gcp]\nregions: [us-east-1]\n",
      "d.yml", builtin_catalog(), d);
  ASSERT_TRUE(s) << d.str();
  ASSERT_EQ(s->accelerators.size(), 2U);
  EXPECT_EQ(s->accelerators[1].model, "H100");
  EXPECT_EQ(s->accelerators[1].count, 2);
  EXPECT_EQ(s->cpus, 8);
  EXPECT_EQ(s->memory_bytes, 64'000'000'000ULL);
  EXPECT_EQ(s->use_spot, true);
  EXPECT_EQ(s->pins, (std::vector<Pin>{{"aws", "us-east-1"}, {"gcp", "us-east-1"}}));
  EXPECT_EQ(s->run, "echo hi\n");
  // Errors still name the file, line, column and field.
  Diagnostics bad;
  EXPECT_FALSE(load_job_spec_text("type: task\nresources: {gpu: A100:0}\n", "d.yml",
                                  builtin_catalog(), bad));
  EXPECT_THAT(bad.str(), HasSubstr("d.yml:2:18: error: resources.gpu: expected a GPU count"));
  Diagnostics ide;
  EXPECT_FALSE(
      load_job_spec_text("type: dev-environment\nide: vscode\n", "d.yml", builtin_catalog(), ide));
  EXPECT_THAT(ide.str(), HasSubstr("d.yml:1:7: error: type: a dstack dev-environment is"));
}

}  // namespace
}  // namespace hylab
