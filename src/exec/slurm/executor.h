// The Slurm executor: jobs placed in the cloud go to a `clouds:` target as sbatch scripts
// (batch.h); their state is followed with `scontrol show job` every poll interval and
// recorded in the store (queued, running, restarts after preemption, exit code, elapsed
// time and cost), also once Slurm has forgotten the job; cancel is scancel. Logs go to
// JOB_DIR/output.log (appended across restarts), read by the same /v1/jobs/{id}/logs.
// Not yet wired into `hylab serve` (that routes cloud jobs here next). The Slurm commands
// block the event loop for at most their deadline. Event-loop thread only.
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
