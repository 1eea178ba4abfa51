// The Executor interface: where jobs placed by the control plane actually run. The
// local executor runs them on the lab's GPUs; the Slurm executor (later) on a cluster.
// Executors update job records in the Store themselves. An executor is used from the
// server's event-loop thread only.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/job_spec.h"
#include "common/result.h"
#include "store/store.h"

namespace hylab::exec {

struct Inventory {
  std::string source;  // "nvml" or "config"
  std::string detail;  // NVML's driver version, or why NVML is not used
  struct Gpu {
    int index = 0;
    std::string uuid;
    std::string model;
    std::uint64_t memory_bytes = 0;
    std::int64_t job = 0;  // 0: free
  };
  std::vector<Gpu> gpus;
};

// How long a job would queue for the lab's GPUs: the running jobs' remaining hours and
// those of the jobs queued ahead of it, from their specs' `hours`.
struct WaitEstimate {
  double hours = 0;    // 0: it would start now
  bool known = true;   // false: a job ahead gave no hours, so the wait cannot be told
  std::string detail;  // what it waits for, or why the wait is unknown
};

class Executor {
 public:
  virtual ~Executor() = default;
  virtual std::string_view name() const = 0;
  // Adopts jobs that were running when the server stopped, or marks them lost, then
  // starts what the queue allows. Called once at start-up.
  virtual void recover() = 0;
  // Takes a job already in the store (state pending): queues it, or starts it at once.
  virtual Result<bool> submit(std::int64_t job_id) = 0;
  // Queued: cancelled now. Running: SIGTERM, then SIGKILL after the grace period.
  virtual Result<store::JobRecord> cancel(std::int64_t job_id) = 0;
  virtual Inventory inventory() const = 0;
  // The wait of a job not yet submitted, behind everything queued now (lab executors).
  virtual WaitEstimate local_wait(const JobSpec& spec) const {
    (void)spec;
    return {};
  }
};

}  // namespace hylab::exec
