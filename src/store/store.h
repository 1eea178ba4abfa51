// The control plane's state: jobs and their lifecycle in one SQLite file (WAL mode),
// with versioned schema migrations. The only place in hylab that writes SQL.
// Not thread-safe: one Store per thread (the server uses it from its event loop).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"

struct sqlite3;

namespace hylab::store {

// pending -> queued -> running -> succeeded | failed | cancelled | lost
enum class JobState { kPending, kQueued, kRunning, kSucceeded, kFailed, kCancelled, kLost };
std::string_view to_string(JobState s);
std::optional<JobState> job_state_from(std::string_view s);
bool is_terminal(JobState s);

struct JobRecord {
  std::int64_t id = 0;
  std::string name;
  std::string spec;       // the spec as submitted (YAML or JSON text)
  std::string spec_file;  // file name given by the client, for messages
  JobState state = JobState::kPending;
  std::string environment;  // local | cloud | hybrid
  std::string rule;
  bool spot = false;
  std::string decision;  // the placement decision as JSON
  std::string reason;    // why it waits, was lost, or failed to start
  int priority = 0;
  std::string gpus;  // JSON array of assigned GPUs
  std::optional<std::int64_t> pid;
  std::optional<std::int64_t> pid_start;  // /proc start time, to recognise the process
  std::optional<std::int64_t> pgid;
  std::optional<int> exit_code;
  std::optional<int> signal;
  bool cancel_requested = false;
  double created_at = 0;  // Unix seconds
  std::optional<double> queued_at;
  std::optional<double> started_at;
  std::optional<double> ended_at;
  std::string job_dir;
  std::string workdir;  // absolute; empty: the job's own directory
  // Jobs on a cloud target (clouds: in hylab.yaml).
  std::string target;                         // the target's name
  std::string remote_id;                      // the engine's job id (Slurm's)
  int restarts = 0;                           // preemptions the job resumed from
  std::optional<double> cost_usd;             // so far: cost_prior_usd + the current run's
  double cost_prior_usd = 0;                  // the runs before a preemption
  std::optional<double> segment_start;        // when the current run started (Slurm's StartTime)
  std::optional<std::int64_t> outputs_bytes;  // the outputs brought back, once it ended
  std::optional<std::int64_t> outputs_files;
  // Pipelines: the jobs this one waits for (it starts when all have succeeded and is
  // cancelled when one fails), the pipeline's name, and whether it is still held back.
  std::vector<std::int64_t> after;
  std::string pipeline;
  bool held = false;
  // Started by a schedule: its name and the firing's planned time (Unix seconds).
  std::string schedule;
  std::optional<double> planned_at;
};

// A schedule and where its firings stand. The definition is the schedule as JSON (its job
// spec's text included); the scheduler compiles it.
struct ScheduleRecord {
  std::string name;
  std::string source = "api";  // "config" (from hylab.yaml) or "api"
  std::string definition;
  bool suspended = false;
  std::optional<double> last_planned;  // the last firing handled, run or missed
  std::optional<std::int64_t> last_job;
  std::int64_t missed = 0;  // firings not run, over the schedule's life
  double created_at = 0;    // firings are counted from here
  double updated_at = 0;
};

struct JobFilter {
  std::optional<JobState> state;
  std::optional<std::string> environment;
  std::optional<std::string> schedule;
  std::int64_t after_id = 0;  // pagination: ids greater than this
  int limit = 100;
};

struct StateCount {
  std::string state;
  std::string environment;
  std::int64_t count = 0;
};

class Store {
 public:
  // Opens (creating if needed) the database, readable by its owner only (0600, with its
  // -wal and -shm files), and brings its schema up to date.
  static Result<std::unique_ptr<Store>> open(const std::string& path);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  int schema_version() const;

  Result<std::int64_t> insert_job(const JobRecord& job);
  // A pipeline, all or nothing: when `chained`, each job after the first waits for (and is
  // held behind) the one before it. Returns the ids in order.
  Result<std::vector<std::int64_t>> insert_chain(std::vector<JobRecord> jobs, bool chained = true);
  // Called after update_job writes a job in an ending state (succeeded, failed,
  // cancelled, lost), on the caller's thread; at most one listener.
  void on_ended(std::function<void(const JobRecord&)> f) { on_ended_ = std::move(f); }
  Result<JobRecord> get_job(std::int64_t id) const;
  Result<std::vector<JobRecord>> list_jobs(const JobFilter& filter) const;
  // Jobs in one state, in queue order (priority, then id).
  Result<std::vector<JobRecord>> jobs_in_state(JobState state) const;
  // Jobs that ran at some time at or after `since` (Unix seconds): started, and running
  // or ended since then. For spend reports.
  Result<std::vector<JobRecord>> jobs_active_since(double since) const;
  // Writes every mutable field of the job (state, process, times, reason, gpus).
  Result<bool> update_job(const JobRecord& job);
  Result<std::vector<StateCount>> count_by_state() const;

  // Schedules. put_schedule inserts one, or replaces the definition and source of one
  // already there (its firing state kept; `suspended` taken only when it is new or its
  // definition changed).
  Result<bool> put_schedule(const ScheduleRecord& s);
  Result<ScheduleRecord> get_schedule(const std::string& name) const;
  Result<std::vector<ScheduleRecord>> list_schedules() const;
  Result<bool> delete_schedule(const std::string& name);
  Result<bool> set_schedule_suspended(const std::string& name, bool suspended);
  // One firing, in one transaction: its jobs (a chain when `chained`; none for a firing
  // that is skipped), the schedule's last planned time, its last job and `missed` more
  // missed firings. A kill at any moment leaves all of it written or none.
  Result<std::vector<std::int64_t>> record_firing(const std::string& schedule, double planned,
                                                  std::vector<JobRecord> jobs, bool chained,
                                                  std::int64_t missed);
  // A schedule's jobs that have not ended, oldest first.
  Result<std::vector<JobRecord>> active_jobs_of(const std::string& schedule) const;
  // Deletes a schedule's ended jobs beyond the newest `succeeded` that succeeded and the
  // newest `failed` that did not; returns those deleted (their folders are the caller's).
  Result<std::vector<JobRecord>> prune_schedule_jobs(const std::string& schedule, int succeeded,
                                                     int failed);

 private:
  explicit Store(sqlite3* db) : db_(db) {}
  Result<bool> migrate();
  Result<std::vector<std::int64_t>> insert_jobs(std::vector<JobRecord>& jobs, bool chained);
  sqlite3* db_;
  std::function<void(const JobRecord&)> on_ended_;
};

}  // namespace hylab::store
