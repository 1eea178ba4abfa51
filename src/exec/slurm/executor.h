// The Slurm executor: jobs placed in the cloud go to the `clouds:` target that holds them
// most cheaply (placement/burst.h) as sbatch scripts (batch.h), unless the policy's monthly
// cloud budget is spent (then they wait and try again each poll). Their state is followed
// with one `squeue --json` per target every poll interval (more often right after a
// submission), and `scontrol show job -o` when one of them has left squeue (its end and exit
// code), and recorded in the store: queued, running, restarts after preemption, exit
// code, spend (elapsed x the instance's price, the spot price while on spot, summed across
// preemptions), also once Slurm has forgotten the job. A spot job preempted more often than
// policy.max_preemptions moves to the on-demand partition. When a job ends its `outputs`
// come back to JOB_DIR/outputs (copied, or through ssh) before it is recorded as ended.
// Cancel is scancel. Logs go to JOB_DIR/output.log (appended across restarts), read by the
// same /v1/jobs/{id}/logs. The cluster commands run on a small thread pool, never on the
// event loop; their results are applied on it. Event-loop thread only.
#pragma once

#include <memory>

#include "common/config.h"
#include "exec/executor.h"
#include "store/store.h"

namespace boost::asio {
class io_context;
}

namespace hylab::exec::slurm {

struct Options {
  std::string jobs_dir;  // JOB_DIR = jobs_dir/ID: the log and the checkpoint folder; it
                         // must be on storage the cluster's nodes share
  double poll_interval_seconds = 2;
  int grace_seconds = 120;  // SIGTERM before a spot preemption
  double command_timeout_seconds = 30;
  double fetch_timeout_seconds = 3600;  // bringing a job's outputs back
  // This control plane's mark on its Slurm jobs (--comment=hylab-INSTANCE-ID): a job whose
  // Slurm id was not recorded (a stop right after sbatch) is found by it, not submitted twice.
  std::string instance;
};

class SlurmExecutor : public Executor {
 public:
  SlurmExecutor(boost::asio::io_context& ioc, store::Store& store, const Config& cfg, Options opts);
  ~SlurmExecutor() override;

  std::string_view name() const override { return "slurm"; }
  void recover() override;
  Result<bool> submit(std::int64_t job_id) override;
  Result<store::JobRecord> cancel(std::int64_t job_id) override;
  Inventory inventory() const override;
  // One round of following the jobs in flight (the timer calls it; tests may too).
  void poll();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hylab::exec::slurm
