// The local executor: runs jobs on the lab's own GPUs. GPU inventory from NVML or,
// where NVML is absent, from the config; whole-GPU allocation by count and model; a
// queue (priority, then FIFO) when GPUs are busy; one shim process per job in its own
// session (see process.h), watched through a pidfd so a job's end is noticed at once,
// and adopted again after a server restart. Event-loop thread only.
#pragma once

#include <memory>

#include "common/config.h"
#include "exec/executor.h"
#include "store/store.h"

namespace boost::asio {
class io_context;
}

namespace hylab::exec::local {

struct Options {
  std::string jobs_dir;  // where each job's directory goes
  std::uint64_t log_max_bytes = 64ULL << 20;
  double cancel_grace_seconds = 10;
  bool use_nvml = true;  // tests force the configured inventory
};

class LocalExecutor : public Executor {
 public:
  LocalExecutor(boost::asio::io_context& ioc, store::Store& store, const Config& cfg, Options opts);
  ~LocalExecutor() override;

  std::string_view name() const override { return "local"; }
  void recover() override;
  Result<bool> submit(std::int64_t job_id) override;
  Result<store::JobRecord> cancel(std::int64_t job_id) override;
  Inventory inventory() const override;
  WaitEstimate local_wait(const JobSpec& spec) const override;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hylab::exec::local
