// hylab's sbatch scripts on a real one-node Slurm cluster (tests/slurm/cluster.sh: munged,
// slurmctld and slurmd as root on this machine, partitions cloud and cloud-spot, 8 fake
// GPUs): resources and envs reach the job, setup runs before run, the exit code is the
// job's, and a requeued spot job resumes from its checkpoint after a SIGTERM.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>

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
  // A field of the job as `scontrol show job` gives it ("" when it has none). A controller
  // that is slow for a moment makes scontrol fail (a timed-out call, seen once on CI's 2
  // cores as an empty Partition): that is asked again, as the executor asks again at its
  // next poll, for up to 60 s.
  std::string field(const std::string& id, const std::string& name) {
    Ran r;
    wait_until(
        [&] {
          r = slurm({"scontrol", "show", "job", "-o", id});
          return r.code == 0;
        },
        60);
    EXPECT_EQ(r.code, 0) << "scontrol show job " << id << ": " << r.err;
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
  // squeue --json tells the same of an active job.
  auto active = client.query_active();
  ASSERT_TRUE(active) << active.error().message;
  auto it = std::find_if(active->begin(), active->end(),
                         [&](const exec::slurm::SlurmJob& j) { return j.id == *id; });
  ASSERT_NE(it, active->end());
  EXPECT_EQ(it->state, "RUNNING");
  EXPECT_EQ(it->partition, "cloud");
  EXPECT_EQ(it->name, "hylab-11-client");
  EXPECT_FALSE(it->start_time.empty());
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

// A target reached through `ssh HOST`: a real sshd (OpenSSH) on 127.0.0.1 with its own host
// key, and the user's OpenSSH config standing in as `ssh -F` (an `ssh` first on PATH that adds
// it). sbatch and scontrol run on the far side with the target's env, and the job's outputs
// come back as one tar stream.
TEST_F(SlurmTest, ATargetReachedThroughSshSubmitsFollowsAndBringsOutputsBack) {
  const std::string sshd_bin = "/usr/sbin/sshd";
  ASSERT_TRUE(fs::exists(sshd_bin)) << "openssh-server is missing (scripts/install-deps.sh test)";
  std::string d = path("ssh");
  fs::create_directories(d + "/bin");
  for (const char* key : {"host", "user"}) {
    Ran k = run_command({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", d + "/" + key}, {}, d,
                        30);
    ASSERT_EQ(k.code, 0) << k.err;
  }
  fs::copy_file(d + "/user.pub", d + "/authorized_keys");
  int port = free_loopback_port();
  ASSERT_GT(port, 0);
  std::ofstream(d + "/sshd_config") << fmt::format(
      "Port {1}\nListenAddress 127.0.0.1\nHostKey {0}/host\nAuthorizedKeysFile "
      "{0}/authorized_keys\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM "
      "no\nStrictModes no\nPidFile {0}/sshd.pid\nPermitRootLogin prohibit-password\n",
      d, port);
  std::ofstream(d + "/ssh_config") << fmt::format(
      "Host hylab-test-head\n  HostName 127.0.0.1\n  Port {1}\n  IdentityFile {0}/user\n  "
      "IdentitiesOnly yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  "
      "LogLevel ERROR\n",
      d, port);
  std::ofstream(d + "/bin/ssh") << "#!/bin/sh\nexec /usr/bin/ssh -F " << d
                                << "/ssh_config \"$@\"\n";
  fs::permissions(d + "/bin/ssh", fs::perms::owner_all);
  if (::geteuid() == 0) fs::create_directories("/run/sshd");  // its privilege separation
  Process sshd;
  sshd.start({sshd_bin, "-D", "-e", "-f", d + "/sshd_config"}, d + "/sshd.log");
  std::string old_path = std::getenv("PATH") ? std::getenv("PATH") : "/usr/bin:/bin";
  ::setenv("PATH", (d + "/bin:" + old_path).c_str(), 1);
  ASSERT_TRUE(wait_until(
      [&] {
        return run_command({"ssh", "hylab-test-head", "true"}, {}, d, 10).code == 0;
      },
      30))
      << read_file(d + "/sshd.log");

  CloudTarget t = target();
  t.ssh = "hylab-test-head";
  t.env["SLURM_CONF"] = *conf_;
  exec::slurm::SlurmClient client(t);
  std::string work = path("ssh-work");
  fs::create_directories(work);
  JobSpec spec;
  spec.name = "over-ssh";
  spec.run = "mkdir -p out/sub && echo model > out/sub/w.bin && echo \"conf=$SLURM_CONF\"";
  exec::slurm::BatchOptions o;
  o.job_id = 20;
  o.log_path = path("ssh.log");
  o.workdir = work;
  auto id = client.submit(*exec::slurm::batch_script(spec, t, o));
  ASSERT_TRUE(id) << id.error().message;
  std::optional<exec::slurm::SlurmJob> job;
  ASSERT_TRUE(wait_until(
      [&] {
        auto all = client.query_all();
        if (!all) return false;
        for (const auto& j : *all)
          if (j.id == *id) job = j;
        return job && job->ended();
      },
      60));
  EXPECT_EQ(job->state, "COMPLETED");
  EXPECT_THAT(read_file(o.log_path), HasSubstr("conf=" + *conf_));  // the target's env, there
  auto missing = client.fetch(work, {"out/", "nope.txt"}, path("ssh-back"), 60);
  ASSERT_TRUE(missing) << missing.error().message;
  EXPECT_EQ(read_file(path("ssh-back/out/sub/w.bin")), "model\n");
  EXPECT_EQ(*missing, std::vector<std::string>{"nope.txt"});
  auto escape = client.fetch(work, {"../etc"}, path("ssh-back"), 60);
  ASSERT_TRUE(escape);
  EXPECT_THAT(escape->front(), HasSubstr("outputs are paths inside the job's folder"));
  ::setenv("PATH", old_path.c_str(), 1);
}

// The Slurm executor on the real cluster with a real store, driven by its own event loop.
struct Rig {
  Rig(Config c, const std::string& db, const std::string& jobs, const std::string& instance = "")
      : cfg(std::move(c)) {
    auto s = store::Store::open(db);
    EXPECT_TRUE(s) << s.error().message;
    store = std::move(*s);
    exec::slurm::Options opts;
    opts.jobs_dir = jobs;
    opts.poll_interval_seconds = 0.2;
    opts.instance = instance;
    executor = std::make_unique<exec::slurm::SlurmExecutor>(ioc, *store, cfg, opts);
    executor->recover();
  }
  std::int64_t add(const std::string& spec, bool spot = false) {
    store::JobRecord j;
    j.name = "t";
    j.spec = spec;
    j.environment = "cloud";
    j.rule = "test";
    j.decision = "{}";
    j.spot = spot;
    j.created_at = 1;
    auto id = store->insert_job(j);
    EXPECT_TRUE(id) << id.error().message;
    EXPECT_TRUE(executor->submit(*id));
    return *id;
  }
  store::JobRecord job(std::int64_t id) { return *store->get_job(id); }
  std::string state(std::int64_t id) { return std::string(store::to_string(job(id).state)); }
  // Runs the event loop until `cond` holds.
  bool until(const std::function<bool()>& cond, double seconds = 60) {
    return wait_until(
        [&] {
          ioc.restart();  // run_for stops the context whenever it runs out of work
          ioc.run_for(std::chrono::milliseconds(20));
          return cond();
        },
        seconds);
  }
  bool settle(std::int64_t id, const std::string& want, double seconds = 60) {
    return until([&] { return state(id) == want; }, seconds);
  }
  Config cfg;
  boost::asio::io_context ioc;
  std::unique_ptr<store::Store> store;
  std::unique_ptr<exec::slurm::SlurmExecutor> executor;
};

// The executor on the real cluster, with a real store: a job handed to the target is followed
// to its end and recorded (exit code, log, cost from the catalog instance), a failing one too,
// a sensitive one is refused by the executor itself, and cancel reaches Slurm.
TEST_F(SlurmTest, TheExecutorFollowsJobsToTheirEndInTheStore) {
  Config cfg;
  CloudTarget t = target();
  t.instance = "p4d.24xlarge";
  t.env["SLURM_CONF"] = *conf_;
  cfg.clouds.push_back(t);
  Rig rig(cfg, path("executor.db"), path("jobs"));
  std::int64_t ok = rig.add("name: ok\nrun: echo hello-from-slurm\n");
  EXPECT_EQ(rig.state(ok), "pending");  // sbatch runs off the event loop
  EXPECT_THAT(rig.job(ok).reason, HasSubstr("submitting to test-cluster"));
  ASSERT_TRUE(rig.until([&] { return !rig.job(ok).remote_id.empty(); }));
  std::int64_t bad = rig.add("name: bad\nrun: exit 7\n", true);
  std::int64_t secret = rig.add("name: s\ndata: {sensitivity: sensitive}\nrun: cat secrets\n");
  ASSERT_TRUE(rig.settle(ok, "succeeded")) << rig.state(ok) << " " << rig.job(ok).reason;
  auto done = rig.job(ok);
  EXPECT_EQ(done.exit_code, 0);
  EXPECT_EQ(done.target, "test-cluster");
  ASSERT_TRUE(done.cost_usd.has_value());
  EXPECT_GE(*done.cost_usd, 0);
  EXPECT_THAT(read_file(done.job_dir + "/output.log"), HasSubstr("hello-from-slurm"));
  ASSERT_TRUE(rig.settle(bad, "failed"));
  EXPECT_EQ(rig.job(bad).exit_code, 7);
  EXPECT_EQ(rig.state(secret), "failed");
  EXPECT_THAT(rig.job(secret).reason, HasSubstr("never goes to the cloud target"));
  EXPECT_TRUE(rig.job(secret).remote_id.empty());  // nothing reached the cluster

  std::int64_t slow = rig.add("name: slow\nrun: sleep 60\n");
  ASSERT_TRUE(rig.settle(slow, "running"));
  auto cancelled = rig.executor->cancel(slow);
  ASSERT_TRUE(cancelled) << cancelled.error().message;
  ASSERT_TRUE(rig.settle(slow, "cancelled")) << rig.state(slow) << " " << rig.job(slow).reason;
  Ran r = slurm({"scontrol", "show", "job", "-o", rig.job(slow).remote_id});
  EXPECT_THAT(r.out, HasSubstr("JobState=CANCELLED"));
}

// A cancel whose scancel fails (a controller that did not answer in time, injected here
// with a scancel that fails its first call) is sent again by the next poll: the job does not
// run on to its end.
TEST_F(SlurmTest, ACancelWhoseScancelFailsIsSentAgain) {
  std::string real = slurm({"sh", "-c", "command -v scancel"}).out;
  real.erase(real.find_last_not_of(" \n") + 1);
  ASSERT_FALSE(real.empty());
  fs::create_directories(path("faults"));
  std::string marker = path("faults/failed-once");
  {
    std::ofstream f(path("faults/scancel"));
    f << "#!/bin/sh\n"
      << "if [ ! -e '" << marker << "' ]; then touch '" << marker << "'\n"
      << "  echo 'scancel: error: Socket timed out on send/recv operation' >&2; exit 1; fi\n"
      << "exec '" << real << "' \"$@\"\n";
  }
  fs::permissions(path("faults/scancel"), fs::perms::owner_all);
  Config cfg;
  CloudTarget t = target();
  t.env["SLURM_CONF"] = *conf_;
  t.env["PATH"] = path("faults") + ":" + std::getenv("PATH");
  cfg.clouds.push_back(t);
  Rig rig(cfg, path("retry.db"), path("retry-jobs"));
  std::int64_t slow = rig.add("name: slow\nrun: sleep 60\n");
  ASSERT_TRUE(rig.settle(slow, "running")) << rig.state(slow) << " " << rig.job(slow).reason;
  ASSERT_TRUE(rig.executor->cancel(slow));
  ASSERT_TRUE(rig.settle(slow, "cancelled", 30)) << rig.state(slow) << " " << rig.job(slow).reason;
  EXPECT_TRUE(fs::exists(marker));  // the first scancel did fail
  EXPECT_EQ(field(rig.job(slow).remote_id, "JobState"), "CANCELLED");
}

// A stop of `hylab serve` right after sbatch, before the Slurm id was recorded: at the next
// start the job is found on the cluster by hylab's mark (--comment) and followed, not
// submitted a second time.
TEST_F(SlurmTest, AJobSubmittedJustBeforeAStopIsFoundNotSubmittedTwice) {
  Config cfg;
  CloudTarget t = target();
  t.env["SLURM_CONF"] = *conf_;
  cfg.clouds.push_back(t);
  const std::string spec_text = "name: adopt\nrun: echo adopted\n";
  std::int64_t id = 0;
  {
    auto store = store::Store::open(path("adopt.db"));
    ASSERT_TRUE(store);
    store::JobRecord j;
    j.name = "adopt";
    j.spec = spec_text;
    j.environment = "cloud";
    j.rule = "test";
    j.decision = "{}";
    j.created_at = 1;
    id = *(*store)->insert_job(j);
    j = *(*store)->get_job(id);
    j.target = "test-cluster";  // as submit() records it before running sbatch
    j.job_dir = path("adopt-jobs/" + std::to_string(id));
    j.reason = "submitting to test-cluster";
    ASSERT_TRUE((*store)->update_job(j));
  }
  // What sbatch had been given when the server stopped.
  JobSpec spec;
  spec.name = "adopt";
  spec.run = "echo adopted";
  exec::slurm::BatchOptions o;
  o.job_id = id;
  o.log_path = path("adopt.log");
  o.comment = fmt::format("hylab-inst1-{}", id);
  auto script = exec::slurm::batch_script(spec, t, o);
  ASSERT_TRUE(script);
  EXPECT_THAT(*script, HasSubstr("#SBATCH --comment=hylab-inst1-" + std::to_string(id) + "\n"));
  std::string slurm_id = submit(*script, "adopt");

  Rig rig(cfg, path("adopt.db"), path("adopt-jobs"), "inst1");  // recover() runs
  ASSERT_TRUE(rig.until([&] { return !rig.job(id).remote_id.empty(); }));
  EXPECT_EQ(rig.job(id).remote_id, slurm_id);
  EXPECT_THAT(rig.job(id).reason, HasSubstr("found by its mark"));
  ASSERT_TRUE(rig.settle(id, "succeeded")) << rig.job(id).reason;
  Ran all = slurm({"scontrol", "show", "job", "-o"});
  std::string mark = "Comment=hylab-inst1-" + std::to_string(id) + " ";
  std::size_t count = 0;
  for (auto at = all.out.find(mark); at != std::string::npos; at = all.out.find(mark, at + 1))
    ++count;
  EXPECT_EQ(count, 1U) << all.out;
}

// Managed spot: each preemption is counted and the job resumes from its checkpoint; once
// preempted more often than policy.max_preemptions it moves to the on-demand partition,
// and its spend covers every run, at the spot price while on spot.
TEST_F(SlurmTest, ASpotJobPreemptedTooOftenFallsBackToOnDemand) {
  Config cfg;
  CloudTarget t = target();
  t.instance = "p4d.24xlarge";
  t.env["SLURM_CONF"] = *conf_;
  cfg.clouds.push_back(t);
  cfg.policy.max_preemptions = 1;
  Rig rig(cfg, path("fallback.db"), path("fallback-jobs"));
  std::int64_t id = rig.add(R"(name: spotty
run: |
  ck="$HYLAB_CHECKPOINT_DIR/step"
  step=$(cat "$ck" 2>/dev/null || echo 0)
  echo "resumed at $step restart=$HYLAB_RESTART_COUNT"
  trap 'echo $step > "$ck"; exit 143' TERM
  while [ "$step" -lt 30 ] || [ ! -e "$HYLAB_CHECKPOINT_DIR/go" ]; do
    step=$((step + 1)); echo $step > "$ck.live"; sleep 0.1
  done
  echo "finished at $step"
)",
                            true);
  auto progressed = [&](int at_least) {
    std::string live =
        read_file(path("fallback-jobs/" + std::to_string(id) + "/checkpoint/step.live"));
    return !live.empty() && std::stoi(live) >= at_least;
  };
  // Two preemptions, each once the job has run a while (and been seen running).
  for (int n = 1; n <= 2; ++n) {
    ASSERT_TRUE(rig.until([&] {
      return rig.state(id) == "running" && rig.job(id).restarts == n - 1 && progressed(3 * n);
    })) << rig.state(id)
        << " " << rig.job(id).reason;
    ASSERT_EQ(slurm({"scontrol", "requeue", rig.job(id).remote_id}).code, 0);
  }
  // It ends only when told: never before the test has preempted it twice, however slow this
  // machine is.
  std::ofstream(path("fallback-jobs/" + std::to_string(id) + "/checkpoint/go")) << "go\n";
  ASSERT_TRUE(rig.settle(id, "succeeded", 120)) << rig.job(id).reason;
  auto job = rig.job(id);
  EXPECT_EQ(job.restarts, 2);
  EXPECT_FALSE(job.spot);  // on-demand now
  EXPECT_EQ(field(job.remote_id, "Partition"), "cloud");
  std::string log = read_file(job.job_dir + "/output.log");
  EXPECT_THAT(log, HasSubstr("restart=2"));
  EXPECT_THAT(log, Not(HasSubstr("resumed at 0 restart=2")));  // from the checkpoint
  ASSERT_TRUE(job.cost_usd);
  ASSERT_TRUE(job.started_at && job.ended_at);
  // Every run counts: more than the last run's time at the on-demand price alone, and no
  // more than the whole span at the on-demand price.
  const Instance* p4d = cfg.catalog.find_instance("p4d.24xlarge");
  double last_run = (*job.ended_at - *job.segment_start) / 3600;
  EXPECT_GT(*job.cost_usd, last_run * p4d->usd_per_hour);
  EXPECT_LE(*job.cost_usd, (*job.ended_at - *job.started_at + 2) / 3600 * p4d->usd_per_hour);
  EXPECT_GT(job.cost_prior_usd, 0);
}

// Pattern 1, step 6: a job's `outputs` (paths in its folder) and what it wrote to
// $HYLAB_OUTPUT_DIR come back to the job's output directory, with size and file count
// recorded; a missing one is named. The monthly budget: once the month's cloud spend
// reaches it, a new cloud job waits, saying why, and never reaches Slurm.
TEST_F(SlurmTest, OutputsComeBackAndTheMonthlyBudgetHoldsNewJobs) {
  Config cfg;
  CloudTarget t = target();
  t.instance = "p4d.24xlarge";
  t.env["SLURM_CONF"] = *conf_;
  cfg.clouds.push_back(t);
  cfg.policy.monthly_cloud_budget_usd = 0.000001;  // the first job spends it
  Rig rig(cfg, path("outputs.db"), path("outputs-jobs"));
  std::int64_t id = rig.add(R"(name: train
outputs: [models/ft/, metrics.json, missing.txt]
run: |
  mkdir -p models/ft && head -c 3000 /dev/zero > models/ft/weights.bin && echo x > models/ft/cfg
  echo '{"loss": 0.1}' > metrics.json
  echo direct > "$HYLAB_OUTPUT_DIR/direct.txt"
  sleep 1
)");
  ASSERT_TRUE(rig.settle(id, "succeeded")) << rig.job(id).reason;
  auto job = rig.job(id);
  std::string out = job.job_dir + "/outputs";
  EXPECT_EQ(read_file(out + "/models/ft/weights.bin").size(), 3000U);
  EXPECT_EQ(read_file(out + "/metrics.json"), "{\"loss\": 0.1}\n");
  EXPECT_EQ(read_file(out + "/direct.txt"), "direct\n");
  EXPECT_EQ(job.outputs_files, 4);
  EXPECT_EQ(job.outputs_bytes, 3000 + 2 + 14 + 7);
  EXPECT_THAT(job.reason, HasSubstr("outputs not found: missing.txt"));
  ASSERT_TRUE(job.cost_usd);
  EXPECT_GT(*job.cost_usd, 0);

  std::int64_t next = rig.add("name: next\nrun: echo should-not-run\n");
  EXPECT_EQ(rig.state(next), "pending");
  EXPECT_THAT(rig.job(next).reason, HasSubstr("monthly cloud budget ($0.00"));
  EXPECT_THAT(rig.job(next).reason, HasSubstr("is spent"));
  rig.until([] { return false; }, 1);  // a few polls: it stays held
  EXPECT_EQ(rig.state(next), "pending");
  EXPECT_TRUE(rig.job(next).remote_id.empty());
  ASSERT_TRUE(rig.executor->cancel(next));
  EXPECT_EQ(rig.state(next), "cancelled");
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

  // Long enough to be seen running even when this machine is loaded (a poll whose scontrol
  // times out leaves the job as it was).
  std::int64_t slow = s.submit(big + "run: sleep 8; echo done-after-the-restart\n");
  ASSERT_TRUE(s.wait_state(slow, "running", 60)) << s.job(slow);
  s.stop(SIGKILL);
  s.start();
  ASSERT_TRUE(s.wait_state(slow, "succeeded", 60)) << s.job(slow);
  EXPECT_THAT(s.request("GET", fmt::format("/v1/jobs/{}/logs", slow)).body,
              HasSubstr("done-after-the-restart"));
}

// Burst through `hylab serve`: with the lab's GPUs held for hours, a job that would wait
// past policy.max_local_wait runs on the cluster now, its reasons giving both costs; a
// sensitive one waits for the lab instead. `hylab logs -f` follows the cloud job to its
// end, and its spend shows in `hylab cost report` and on /metrics.
TEST_F(SlurmTest, ABusyLabBurstsToTheCloudAndItsSpendIsReported) {
  ServeHarness s(fmt::format(
      "policy: {{max_local_wait: 1h}}\n"
      "clouds:\n  - {{name: test-cluster, partition: cloud, spot_partition: cloud-spot, instance: "
      "p4d.24xlarge, env: {{SLURM_CONF: {}}}}}\n",
      *conf_));
  s.start();
  const std::string two = "resources: {accelerators: RTX4090:2}\n";
  std::int64_t blocker = s.submit("name: blocker\n" + two + "hours: 5\nrun: sleep 120\n");
  ASSERT_TRUE(s.wait_state(blocker, "running")) << s.job(blocker);
  std::int64_t id = s.submit("name: burst\n" + two +
                             "hours: 0.5\nrun: for i in 1 2 3; do echo tick $i; sleep 0.5; done\n");
  auto job = s.job(id);
  EXPECT_EQ(job.at("environment").as_string(), "cloud") << job;
  EXPECT_EQ(job.at("rule").as_string(), "burst");
  std::string why = json::serialize(job.at("decision").at("reasons"));
  EXPECT_THAT(why, HasSubstr("longer than the policy's max_local_wait (1 h)"));
  EXPECT_THAT(why, HasSubstr("held by job " + std::to_string(blocker)));
  EXPECT_THAT(why, HasSubstr("runs now on cloud target test-cluster for $16.39"));  // 32.77 x 0.5
  EXPECT_THAT(why, HasSubstr("on the lab after the wait"));

  Ran logs =
      run_command({HYLAB_BINARY, "--config", s.config_path(), "logs", "-f", std::to_string(id)}, {},
                  s.dir(), 90);
  EXPECT_EQ(logs.code, 0) << logs.err;
  EXPECT_THAT(logs.out, HasSubstr("tick 1\ntick 2\ntick 3\n"));
  ASSERT_TRUE(s.wait_state(id, "succeeded", 30)) << s.job(id);
  double cost = s.job(id).at("cost_usd").to_number<double>();
  EXPECT_GT(cost, 0);

  std::int64_t secret =
      s.submit("name: secret\n" + two + "data: {sensitivity: sensitive}\nhours: 1\nrun: cat x\n");
  EXPECT_EQ(s.job(secret).at("environment").as_string(), "local");
  EXPECT_EQ(s.state(secret), "queued");

  Ran report = run_command(
      {HYLAB_BINARY, "--config", s.config_path(), "cost", "report", "-o", "json"}, {}, s.dir(), 30);
  ASSERT_EQ(report.code, 0) << report.err;
  json::value r = json::parse(report.out);
  EXPECT_GT(r.at("by_environment").at("cloud").to_number<double>(), 0);
  EXPECT_GT(r.at("by_environment").at("local").to_number<double>(), 0);  // the blocker so far
  bool listed = false;
  for (const auto& j : r.at("jobs").as_array()) {
    if (j.at("id").as_int64() != id) continue;
    listed = true;
    EXPECT_EQ(j.at("target").as_string(), "test-cluster");
    EXPECT_NEAR(j.at("usd").to_number<double>(), cost, 1e-4);
  }
  EXPECT_TRUE(listed) << report.out;
  Ran table =
      run_command({HYLAB_BINARY, "--config", s.config_path(), "cost", "report", "--since", "1d"},
                  {}, s.dir(), 30);
  ASSERT_EQ(table.code, 0) << table.err;
  EXPECT_THAT(table.out, HasSubstr("test-cluster"));
  EXPECT_THAT(table.out, HasSubstr("cloud this month: $"));
  Ran bad = run_command(
      {HYLAB_BINARY, "--config", s.config_path(), "cost", "report", "--since", "last tuesday"}, {},
      s.dir(), 30);
  EXPECT_EQ(bad.code, 2);
  EXPECT_THAT(bad.err, HasSubstr("since must be a date (2026-11-01) or a duration"));

  std::string metrics = s.request("GET", "/metrics").body;
  EXPECT_THAT(metrics, HasSubstr("hylab_cloud_spend_month_usd{target=\"test-cluster\"} 0."));
  EXPECT_THAT(metrics, HasSubstr("hylab_spend_month_usd{environment=\"cloud\"} 0."));
  EXPECT_THAT(metrics, HasSubstr("hylab_cloud_preemptions_month{target=\"test-cluster\"} 0"));
}

}  // namespace
}  // namespace hylab::testing
