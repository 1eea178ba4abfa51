// hylab's sbatch scripts on a real one-node Slurm cluster (tests/slurm/cluster.sh: munged,
// slurmctld and slurmd as root on this machine, partitions cloud and cloud-spot, 8 fake
// GPUs): resources and envs reach the job, setup runs before run, the exit code is the
// job's, and a requeued spot job resumes from its checkpoint after a SIGTERM.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <filesystem>
#include <fstream>

#include "exec/slurm/batch.h"
#include "exec/slurm/client.h"
#include "exec/slurm/executor.h"
#include "process.h"
#include "serve_harness.h"
#include "store/store.h"

namespace hylab::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

const std::string kSource = HYLAB_SOURCE_DIR;

class SlurmTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::temp_directory_path() / fmt::format("hylab-slurm-{}", ::getpid()));
    fs::remove_all(*dir_);
    fs::create_directories(*dir_);
    Ran r =
        run_command({kSource + "/tests/slurm/cluster.sh", "start", (*dir_ / "cluster").string()},
                    {}, dir_->string(), 60);
    started_ = r.code == 0;
    if (!started_) ADD_FAILURE() << "the test cluster did not start: " << r.out << r.err;
    conf_ = new std::string((*dir_ / "cluster" / "slurm.conf").string());
  }
  static void TearDownTestSuite() {
    run_command({kSource + "/tests/slurm/cluster.sh", "stop", (*dir_ / "cluster").string()}, {},
                dir_->string(), 30);
    std::error_code ec;
    fs::remove_all(*dir_, ec);
    delete dir_;
    delete conf_;
  }
  void SetUp() override { ASSERT_TRUE(started_); }

  Ran slurm(std::vector<std::string> argv) {
    return run_command(std::move(argv), {"SLURM_CONF=" + *conf_}, dir_->string(), 30);
  }
  std::string path(const std::string& name) const { return (*dir_ / name).string(); }

  // Submits a script; returns the Slurm job id.
  std::string submit(const std::string& script, const std::string& name) {
    std::ofstream(path(name + ".sbatch")) << script;
    Ran r = slurm({"sbatch", "--parsable", path(name + ".sbatch")});
    EXPECT_EQ(r.code, 0) << r.err;
    std::string id = r.out.substr(0, r.out.find_first_of(";\n"));
    return id;
  }
  // A field of `scontrol show job -o ID` ("JobState", "ExitCode", "Restarts").
  std::string field(const std::string& id, const std::string& name) {
    Ran r = slurm({"scontrol", "show", "job", "-o", id});
    auto at = r.out.find(" " + name + "=");
    if (at == std::string::npos) return "";
    at += name.size() + 2;
    return r.out.substr(at, r.out.find(' ', at) - at);
  }
  bool wait_state(const std::string& id, const std::string& state, double seconds = 60) {
    return wait_until([&] { return field(id, "JobState") == state; }, seconds);
  }

  static fs::path* dir_;
  static std::string* conf_;
  static bool started_;
};

fs::path* SlurmTest::dir_ = nullptr;
std::string* SlurmTest::conf_ = nullptr;
bool SlurmTest::started_ = false;

CloudTarget target() {
  CloudTarget t;
  t.name = "test-cluster";
  t.partition = "cloud";
  t.spot_partition = "cloud-spot";
  return t;
}

TEST_F(SlurmTest, AJobGetsItsGpusEnvsAndSetupBeforeRun) {
  JobSpec spec;
  spec.name = "hello";
  spec.accelerators = {{"A100-80GB", 2}};
  spec.cpus = 1;
  spec.hours = 0.1;
  spec.envs = {{"GREETING", std::string("it's me")}};
  spec.setup = "echo setup-ran > \"$HYLAB_CHECKPOINT_DIR/setup\"";
  spec.run =
      "cat \"$HYLAB_CHECKPOINT_DIR/setup\"; echo \"gpus=$CUDA_VISIBLE_DEVICES\"; "
      "echo \"greeting=$GREETING job=$HYLAB_JOB_ID\"";
  exec::slurm::BatchOptions o;
  o.job_id = 7;
  o.log_path = path("hello.log");
  o.checkpoint_dir = path("ckpt-hello");
  auto script = exec::slurm::batch_script(spec, target(), o);
  ASSERT_TRUE(script) << script.error().message;
  std::string id = submit(*script, "hello");
  ASSERT_TRUE(wait_state(id, "COMPLETED")) << field(id, "JobState") << read_file(o.log_path);
  std::string log = read_file(o.log_path);
  EXPECT_THAT(log, HasSubstr("setup-ran\n"));
  EXPECT_THAT(log, HasSubstr("gpus=0,1\n"));
  EXPECT_THAT(log, HasSubstr("greeting=it's me job=7\n"));
  EXPECT_EQ(field(id, "ExitCode"), "0:0");
  EXPECT_EQ(field(id, "Partition"), "cloud");
}

TEST_F(SlurmTest, TheRunExitCodeIsTheJobs) {
  JobSpec spec;
  spec.name = "fails";
  spec.run = "echo about to fail; exit 3";
  exec::slurm::BatchOptions o;
  o.job_id = 8;
  o.log_path = path("fails.log");
  auto script = exec::slurm::batch_script(spec, target(), o);
  ASSERT_TRUE(script);
  std::string id = submit(*script, "fails");
  ASSERT_TRUE(wait_state(id, "FAILED")) << field(id, "JobState");
  EXPECT_EQ(field(id, "ExitCode"), "3:0");
  EXPECT_THAT(read_file(o.log_path), HasSubstr("about to fail"));
  // A failing setup stops the job before run.
  spec.setup = "exit 4";
  spec.run = "echo should-not-run";
  o.log_path = path("setup-fails.log");
  script = exec::slurm::batch_script(spec, target(), o);
  ASSERT_TRUE(script);
  id = submit(*script, "setup-fails");
  ASSERT_TRUE(wait_state(id, "FAILED"));
  EXPECT_EQ(field(id, "ExitCode"), "4:0");
  EXPECT_THAT(read_file(o.log_path), Not(HasSubstr("should-not-run")));
  EXPECT_THAT(read_file(o.log_path), HasSubstr("hylab: setup failed (4)"));
}

TEST_F(SlurmTest, APreemptedSpotJobResumesFromItsCheckpoint) {
  JobSpec spec;
  spec.name = "spot";
  // A training loop that saves its step on SIGTERM and resumes from it.
  spec.run = R"(ck="$HYLAB_CHECKPOINT_DIR/step"
step=$(cat "$ck" 2>/dev/null || echo 0)
echo "resumed at $step restart=$HYLAB_RESTART_COUNT"
trap 'echo "saved at $step"; echo $step > "$ck"; exit 143' TERM
while [ "$step" -lt 40 ]; do
  step=$((step + 1))
  if [ "$HYLAB_RESTART_COUNT" = 0 ]; then echo $step > "$ck.live"; fi
  sleep 0.05
done
echo "finished at $step")";
  exec::slurm::BatchOptions o;
  o.job_id = 9;
  o.spot = true;
  o.log_path = path("spot.log");
  o.checkpoint_dir = path("ckpt-spot");
  auto script = exec::slurm::batch_script(spec, target(), o);
  ASSERT_TRUE(script);
  std::string id = submit(*script, "spot");
  // Preempt it (scontrol requeue, as a spot reclaim does) once it has made progress.
  ASSERT_TRUE(wait_until(
      [&] {
        std::string live = read_file(path("ckpt-spot/step.live"));
        return !live.empty() && std::stoi(live) >= 5;
      },
      60))
      << read_file(o.log_path);
  ASSERT_EQ(slurm({"scontrol", "requeue", id}).code, 0);
  ASSERT_TRUE(wait_until(
      [&] { return read_file(o.log_path).find("finished at 40") != std::string::npos; }, 90))
      << read_file(o.log_path);
  ASSERT_TRUE(wait_state(id, "COMPLETED"));
  std::string log = read_file(o.log_path);
  EXPECT_THAT(log, HasSubstr("resumed at 0 restart=0\n"));
  EXPECT_THAT(log, HasSubstr("saved at "));  // SIGTERM reached the step
  auto at = log.find("restart=1");
  ASSERT_NE(at, std::string::npos) << log;
  int resumed = std::stoi(log.substr(log.rfind("resumed at ", at) + 11));
  EXPECT_GE(resumed, 5) << "resumed from zero, not from the checkpoint";
  EXPECT_EQ(field(id, "Restarts"), "1");
  EXPECT_EQ(field(id, "Partition"), "cloud-spot");
}

TEST_F(SlurmTest, TheClientSubmitsFollowsAndCancels) {
  CloudTarget t = target();
  t.env["SLURM_CONF"] = *conf_;
  exec::slurm::SlurmClient client(t);
  JobSpec spec;
  spec.name = "client";
  spec.run = "echo one; exit 5";
  exec::slurm::BatchOptions o;
  o.job_id = 10;
  o.log_path = path("client.log");
  auto id = client.submit(*exec::slurm::batch_script(spec, t, o));
  ASSERT_TRUE(id) << id.error().message;
  std::optional<exec::slurm::SlurmJob> job;
  ASSERT_TRUE(wait_until(
      [&] {
        auto q = client.query(*id);
        if (q && *q) job = **q;
        return job && job->ended();
      },
      60));
  EXPECT_EQ(job->state, "FAILED");
  EXPECT_EQ(job->exit_code, 5);
  EXPECT_FALSE(job->signal);
  EXPECT_EQ(job->name, "hylab-10-client");
  EXPECT_EQ(job->partition, "cloud");
  EXPECT_FALSE(job->start_time.empty());

  spec.run = "sleep 60";
  o.job_id = 11;
  id = client.submit(*exec::slurm::batch_script(spec, t, o));
  ASSERT_TRUE(id) << id.error().message;
  ASSERT_TRUE(wait_until(
      [&] {
        auto q = client.query(*id);
        return q && *q && (*q)->state == "RUNNING";
      },
      60));
  ASSERT_TRUE(client.cancel(*id));
  ASSERT_TRUE(wait_until(
      [&] {
        auto q = client.query(*id);
        return q && *q && (*q)->state == "CANCELLED";
      },
      60));

  auto gone = client.query("999999");  // a job Slurm does not know (or forgot)
  ASSERT_TRUE(gone) << gone.error().message;
  EXPECT_FALSE(*gone);
  // A target whose cluster does not answer (sbatch without its config waits for one):
  // an error naming the target and the command, within the deadline.
  CloudTarget broken = t;
  broken.env["SLURM_CONF"] = path("no-such.conf");
  auto r = exec::slurm::SlurmClient(broken, 2).submit("#!/bin/bash\ntrue\n");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("cloud target test-cluster: sbatch "));
}

// The executor on the real cluster, with a real store: a job handed to the target is followed
// to its end and recorded (exit code, log, cost from the catalog instance), a failing one too,
// a sensitive one is refused by the executor itself, and cancel reaches Slurm.
TEST_F(SlurmTest, TheExecutorFollowsJobsToTheirEndInTheStore) {
  Config cfg;
  CloudTarget t = target();
  t.instance = "p4d.24xlarge";
  t.env["SLURM_CONF"] = *conf_;
  cfg.clouds.push_back(t);
  auto store = store::Store::open(path("executor.db"));
  ASSERT_TRUE(store) << store.error().message;
  boost::asio::io_context ioc;
  exec::slurm::Options opts;
  opts.jobs_dir = path("jobs");
  opts.poll_interval_seconds = 0.2;
  exec::slurm::SlurmExecutor executor(ioc, **store, cfg, opts);
  executor.recover();
  auto add = [&](const std::string& spec, bool spot = false) {
    store::JobRecord j;
    j.name = "t";
    j.spec = spec;
    j.environment = "cloud";
    j.rule = "test";
    j.decision = "{}";
    j.spot = spot;
    j.created_at = 1;
    auto id = (*store)->insert_job(j);
    EXPECT_TRUE(id) << id.error().message;
    EXPECT_TRUE(executor.submit(*id));
    return *id;
  };
  auto state = [&](std::int64_t id) {
    return std::string(store::to_string((*store)->get_job(id)->state));
  };
  auto settle = [&](std::int64_t id, const std::string& want) {
    return wait_until(
        [&] {
          ioc.restart();  // run_for stops the context whenever it runs out of work
          ioc.run_for(std::chrono::milliseconds(50));
          return state(id) == want;
        },
        60);
  };
  std::int64_t ok = add("name: ok\nrun: echo hello-from-slurm\n");
  EXPECT_EQ(state(ok), "pending");  // sbatch runs off the event loop
  EXPECT_THAT((*store)->get_job(ok)->reason, HasSubstr("submitting to test-cluster"));
  ASSERT_TRUE(wait_until(
      [&] {
        ioc.restart();
        ioc.run_for(std::chrono::milliseconds(20));
        return !(*store)->get_job(ok)->remote_id.empty();
      },
      30));
  std::int64_t bad = add("name: bad\nrun: exit 7\n", true);
  std::int64_t secret = add("name: s\ndata: {sensitivity: sensitive}\nrun: cat secrets\n");
  ASSERT_TRUE(settle(ok, "succeeded")) << state(ok) << " " << (*store)->get_job(ok)->reason;
  auto done = (*store)->get_job(ok);
  EXPECT_EQ(done->exit_code, 0);
  EXPECT_EQ(done->target, "test-cluster");
  ASSERT_TRUE(done->cost_usd.has_value());
  EXPECT_GE(*done->cost_usd, 0);
  EXPECT_THAT(read_file(done->job_dir + "/output.log"), HasSubstr("hello-from-slurm"));
  ASSERT_TRUE(settle(bad, "failed"));
  EXPECT_EQ((*store)->get_job(bad)->exit_code, 7);
  EXPECT_EQ(state(secret), "failed");
  EXPECT_THAT((*store)->get_job(secret)->reason, HasSubstr("never goes to the cloud target"));
  EXPECT_TRUE((*store)->get_job(secret)->remote_id.empty());  // nothing reached the cluster

  std::int64_t slow = add("name: slow\nrun: sleep 60\n");
  ASSERT_TRUE(settle(slow, "running"));
  auto cancelled = executor.cancel(slow);
  ASSERT_TRUE(cancelled) << cancelled.error().message;
  ASSERT_TRUE(settle(slow, "cancelled"));
  Ran r = slurm({"scontrol", "show", "job", "-o", (*store)->get_job(slow)->remote_id});
  EXPECT_THAT(r.out, HasSubstr("JobState=CANCELLED"));
}

// Through `hylab serve`: a job placed in the cloud runs on the target, its log comes through
// the same API, and a server killed while the job runs picks it up again after a restart.
TEST_F(SlurmTest, ServeRunsCloudJobsOnTheTargetAcrossARestart) {
  ServeHarness s(fmt::format(
      "clouds:\n  - {{name: test-cluster, partition: cloud, spot_partition: cloud-spot, instance: "
      "p5.48xlarge, env: {{SLURM_CONF: {}}}}}\n",
      *conf_));
  s.start();
  const std::string big = "category: training\nresources: {accelerators: H100:8}\n";
  std::int64_t id = s.submit(big + "run: echo on-the-cluster\n");
  ASSERT_TRUE(s.wait_state(id, "succeeded", 60)) << s.job(id);
  auto job = s.job(id);
  EXPECT_EQ(job.at("environment").as_string(), "cloud");
  EXPECT_EQ(job.at("target").as_string(), "test-cluster");
  EXPECT_FALSE(job.at("remote_id").as_string().empty());
  EXPECT_TRUE(job.at("cost_usd").is_number());
  EXPECT_THAT(s.request("GET", fmt::format("/v1/jobs/{}/logs", id)).body,
              HasSubstr("on-the-cluster"));

  std::int64_t slow = s.submit(big + "run: sleep 3; echo done-after-the-restart\n");
  ASSERT_TRUE(s.wait_state(slow, "running", 60)) << s.job(slow);
  s.stop(SIGKILL);
  s.start();
  ASSERT_TRUE(s.wait_state(slow, "succeeded", 60)) << s.job(slow);
  EXPECT_THAT(s.request("GET", fmt::format("/v1/jobs/{}/logs", slow)).body,
              HasSubstr("done-after-the-restart"));
}

}  // namespace
}  // namespace hylab::testing
