// Process helpers for the local executor: start time from /proc (to tell a live job
// from a recycled pid), spawning the per-job shim in its own session, the shim's entry
// point, and stopping what a job left running when its shim is gone. Linux only. Any
// thread.
#pragma once

#include <sys/types.h>

#include <chrono>
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

// JOB_DIR/shim.json, written by the shim right after it started the job: its own pid and
// the job's process group (the group leader is the shim's child, so only the shim knows
// it). Nothing when the shim died before writing it.
struct ShimInfo {
  pid_t pid = 0;
  pid_t pgid = 0;
};
std::optional<ShimInfo> read_shim_info(const std::string& job_dir);

// The live processes of session `sid`. A shim leads its own session (spawn_shim's
// POSIX_SPAWN_SETSID), so its pid names the session that holds the job's process group
// and every group the job made, unless a process left it with setsid(). Zombies are not
// counted: they hold no memory and no GPU. Empty when a live process now has the pid
// `sid` itself: that pid was reused, and the session is someone else's.
std::vector<pid_t> session_processes(pid_t sid);

// What stop_sessions did to one session.
struct SessionStop {
  pid_t sid = 0;
  std::size_t signalled = 0;  // processes found and signalled
  std::vector<pid_t> left;    // alive at the deadline (stuck in the kernel, e.g. a driver)
};

// Stops every process of the sessions `sids` (jobs whose shims are gone): SIGTERM, SIGKILL
// to those left after `grace`, then waits until none is left or `deadline` has passed
// since the SIGKILL. All sessions at once, so many lost jobs wait one grace, not one each.
// Blocks the caller for at most grace + deadline.
std::vector<SessionStop> stop_sessions(const std::vector<pid_t>& sids,
                                       std::chrono::milliseconds grace,
                                       std::chrono::milliseconds deadline);

}  // namespace hylab::exec::local
