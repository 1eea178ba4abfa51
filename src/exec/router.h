// Routes each job to the executor of its environment: jobs placed in the cloud to the cloud
// executor (Slurm), the rest to the lab's local executor. The server holds one Router as
// its Executor. Event-loop thread only.
#pragma once

#include "exec/executor.h"
#include "store/store.h"

namespace hylab::exec {

class Router : public Executor {
 public:
  Router(store::Store& store, Executor& local, Executor& cloud)
      : store_(store), local_(local), cloud_(cloud) {}
  std::string_view name() const override { return "router"; }
  void recover() override {
    local_.recover();
    cloud_.recover();
  }
  Result<bool> submit(std::int64_t job_id) override {
    auto job = store_.get_job(job_id);
    if (!job) return job.error();
    return of(*job).submit(job_id);
  }
  Result<store::JobRecord> cancel(std::int64_t job_id) override {
    auto job = store_.get_job(job_id);
    if (!job) return job.error();
    return of(*job).cancel(job_id);
  }
  Inventory inventory() const override { return local_.inventory(); }  // the lab's GPUs
  WaitEstimate local_wait(const JobSpec& spec) const override { return local_.local_wait(spec); }

 private:
  Executor& of(const store::JobRecord& job) { return job.environment == "cloud" ? cloud_ : local_; }
  store::Store& store_;
  Executor& local_;
  Executor& cloud_;
};

}  // namespace hylab::exec
