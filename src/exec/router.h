// Routes each job to the executor of its environment: jobs placed in the cloud to the cloud
// executor (Slurm), the rest to the lab's local executor. The server holds one Router as
// its Executor.
//
// It also runs pipelines: a job that waits for others (JobRecord::after) is held back from
// its executor until every one of them has succeeded, and is cancelled, saying which, when
// one of them fails, is cancelled or is lost. Endings reach it through the store's on_ended
// listener and are handled on the event loop, so a whole chain unwinds one job at a time.
// Event-loop thread only.
#pragma once

#include <memory>

#include "exec/executor.h"
#include "store/store.h"

namespace boost::asio {
class io_context;
}

namespace hylab::exec {

class Router : public Executor {
 public:
  Router(boost::asio::io_context& ioc, store::Store& store, Executor& local, Executor& cloud);
  ~Router() override;
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  std::string_view name() const override { return "router"; }
  void recover() override;
  // A held job stays pending (its reason says what it waits for) until released.
  Result<bool> submit(std::int64_t job_id) override;
  Result<store::JobRecord> cancel(std::int64_t job_id) override;
  Inventory inventory() const override { return local_.inventory(); }  // the lab's GPUs
  WaitEstimate local_wait(const JobSpec& spec) const override { return local_.local_wait(spec); }

 private:
  Executor& of(const store::JobRecord& job) { return job.environment == "cloud" ? cloud_ : local_; }
  // Releases or cancels every held job whose waits are over.
  void settle();
  // Nothing when the job must keep waiting; else released or cancelled now.
  void settle_one(store::JobRecord& job);

  boost::asio::io_context& ioc_;
  store::Store& store_;
  Executor& local_;
  Executor& cloud_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  bool settle_posted_ = false;
};

}  // namespace hylab::exec
