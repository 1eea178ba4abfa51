// Process helpers for the local executor: start time from /proc (to tell a live job
// from a recycled pid), spawning the per-job shim in its own session, and the shim's
// entry point. Linux only. Any thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"

namespace hylab::exec::local {

// Field 22 of /proc/PID/stat (clock ticks since boot), or nothing if PID is gone.
std::optional<std::int64_t> process_start_time(pid_t pid);
// True when PID runs and started at `start_time`: the same process, not a reused pid.
bool same_process(pid_t pid, std::int64_t start_time);

// What the shim needs to run one job, written to JOB_DIR/launch.json (mode 0600: it
// holds the job's environment).
struct Launch {
  std::int64_t job_id = 0;
  std::string job_dir;
  std::string workdir;
  std::vector<std::string> env;  // NAME=value, complete
  std::string setup;
  std::string run;
  std::uint64_t log_max_bytes = 64ULL << 20;
  double cancel_grace_seconds = 10;
};

// Writes launch.json and starts `hylab __shim JOB_DIR` in a new session with no
// inherited descriptors. Returns the shim's pid.
Result<pid_t> spawn_shim(const Launch& launch);

// `hylab __shim JOB_DIR`: runs setup then run under bash in a new process group with
// stdout/stderr into JOB_DIR/output.log (capped), forwards SIGTERM to the group with
// SIGKILL after the grace period, and records the exit in JOB_DIR/status.json. It
// outlives a crashed server, which adopts it again at restart.
int shim_main(const std::string& job_dir);

// JOB_DIR/status.json, written atomically by the shim when the job has ended.
struct ExitStatus {
  std::optional<int> exit_code;
  std::optional<int> signal;
  bool cancelled = false;
};
std::optional<ExitStatus> read_exit_status(const std::string& job_dir);

// The shim of JOB_DIR from its shim.json, if that process is alive and is that shim
// (its command line names the folder): for a job whose start the server did not finish
// recording before it stopped.
std::optional<pid_t> running_shim(const std::string& job_dir);

}  // namespace hylab::exec::local
