// The sbatch script of a job for a Slurm cloud target: resources to #SBATCH options, spot
// jobs requeued with a SIGTERM grace period, the checkpoint folder, envs quoted for the
// shell, and the refusals (sensitive data, envs without values). The script's behaviour on
// a real cluster is tested in tests/integration/slurm_test.cpp.
#include "exec/slurm/batch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace hylab::exec::slurm {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

JobSpec spec() {
  JobSpec s;
  s.name = "llama ft";
  s.num_nodes = 2;
  s.accelerators = {{"A100-80GB", 8}};
  s.cpus = 11.5;
  s.memory_bytes = 64ULL << 30;
  s.hours = 10;
  s.envs = {{"LR", std::string("3e-4")}, {"NOTE", std::string("it's \"quoted\" $HOME")}};
  s.setup = "pip install -r requirements.txt";
  s.run = "torchrun train.py";
  return s;
}

CloudTarget target() {
  CloudTarget t;
  t.name = "aws-pc";
  t.partition = "cloud";
  t.spot_partition = "cloud-spot";
  return t;
}

TEST(SlurmBatch, ResourcesBecomeSbatchOptions) {
  BatchOptions o;
  o.job_id = 42;
  o.log_path = "/shared/hylab/42.log";
  o.checkpoint_dir = "/shared/hylab/ckpt/42";
  auto s = batch_script(spec(), target(), o);
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_THAT(*s, HasSubstr("#SBATCH --job-name=hylab-42-llama-ft\n"));
  EXPECT_THAT(*s, HasSubstr("#SBATCH --partition=cloud\n"));
  EXPECT_THAT(*s, HasSubstr("#SBATCH --nodes=2\n"));
  EXPECT_THAT(*s, HasSubstr("#SBATCH --gpus-per-node=8\n"));
  EXPECT_THAT(*s, HasSubstr("#SBATCH --cpus-per-task=12\n"));  // rounded up
  EXPECT_THAT(*s, HasSubstr("#SBATCH --mem=65536M\n"));
  EXPECT_THAT(*s, HasSubstr("#SBATCH --time=12:30:00\n"));  // 10 h x 1.25
  EXPECT_THAT(*s, HasSubstr("#SBATCH --output=/shared/hylab/42.log\n"));
  EXPECT_THAT(*s, HasSubstr("#SBATCH --open-mode=append\n"));
  EXPECT_THAT(*s, HasSubstr("#SBATCH --no-requeue\n"));
  EXPECT_THAT(*s, Not(HasSubstr("--signal")));
  EXPECT_THAT(*s, HasSubstr("export HYLAB_CHECKPOINT_DIR='/shared/hylab/ckpt/42'\n"));
  EXPECT_THAT(*s, HasSubstr("export LR='3e-4'\n"));
  EXPECT_THAT(*s, HasSubstr("export NOTE='it'\\''s \"quoted\" $HOME'\n"));
  // setup before run
  EXPECT_LT(s->find("pip install"), s->find("torchrun"));
  EXPECT_EQ(s->rfind("#!/bin/bash\n", 0), 0u);
}

TEST(SlurmBatch, SpotJobsAreRequeuedWithAGracePeriod) {
  BatchOptions o;
  o.spot = true;
  o.grace_seconds = 90;
  auto s = batch_script(spec(), target(), o);
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_THAT(*s, HasSubstr("#SBATCH --partition=cloud-spot\n"));
  EXPECT_THAT(*s, HasSubstr("#SBATCH --requeue\n"));
  EXPECT_THAT(*s, HasSubstr("#SBATCH --signal=B:TERM@90\n"));
  CloudTarget no_spot = target();
  no_spot.spot_partition.clear();
  s = batch_script(spec(), no_spot, o);
  ASSERT_TRUE(s);
  EXPECT_THAT(*s, HasSubstr("#SBATCH --partition=cloud\n"));
}

TEST(SlurmBatch, ShortJobsGetAtLeastFifteenMinutesOfMargin) {
  JobSpec s = spec();
  s.hours = 0.1;  // 6 minutes
  auto script = batch_script(s, target(), {});
  ASSERT_TRUE(script);
  EXPECT_THAT(*script, HasSubstr("#SBATCH --time=00:21:00\n"));
  s.hours = 100;
  script = batch_script(s, target(), {});
  ASSERT_TRUE(script);
  EXPECT_THAT(*script, HasSubstr("#SBATCH --time=5-05:00:00\n"));  // 125 h
  s.hours.reset();
  script = batch_script(s, target(), {});
  ASSERT_TRUE(script);
  EXPECT_THAT(*script, Not(HasSubstr("--time")));  // the partition's limit
}

TEST(SlurmBatch, SensitiveJobsAreRefusedByTheExecutorToo) {
  for (auto level : {Sensitivity::kSensitive, Sensitivity::kRegulated}) {
    JobSpec s = spec();
    s.sensitivity = level;
    auto script = batch_script(s, target(), {});
    ASSERT_FALSE(script);
    EXPECT_EQ(script.error().code, Errc::kInvalidInput);
    EXPECT_THAT(script.error().message, HasSubstr("never goes to the cloud target aws-pc"));
  }
}

TEST(SlurmBatch, EnvsMustHaveValuesAndNames) {
  JobSpec s = spec();
  s.envs["HF_TOKEN"] = std::nullopt;
  auto script = batch_script(s, target(), {});
  ASSERT_FALSE(script);
  EXPECT_THAT(script.error().message, HasSubstr("HF_TOKEN has no value"));
  s = spec();
  s.envs["1BAD"] = "x";
  script = batch_script(s, target(), {});
  ASSERT_FALSE(script);
  EXPECT_THAT(script.error().message, HasSubstr("is not a variable name"));
}

TEST(SlurmBatch, TimeAndQuoting) {
  EXPECT_EQ(slurm_time(0), "00:01:00");
  EXPECT_EQ(slurm_time(59), "00:59:00");
  EXPECT_EQ(slurm_time(24 * 60), "1-00:00:00");
  EXPECT_EQ(shell_quote(""), "''");
  EXPECT_EQ(shell_quote("a'b"), "'a'\\''b'");
}

}  // namespace
}  // namespace hylab::exec::slurm
