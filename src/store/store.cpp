#include "store/store.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "store/sqlite_util.h"

namespace hylab::store {

std::string_view to_string(JobState s) {
  switch (s) {
    case JobState::kPending:
      return "pending";
    case JobState::kQueued:
      return "queued";
    case JobState::kRunning:
      return "running";
    case JobState::kSucceeded:
      return "succeeded";
    case JobState::kFailed:
      return "failed";
    case JobState::kCancelled:
      return "cancelled";
    case JobState::kLost:
      return "lost";
  }
  return "?";
}

std::optional<JobState> job_state_from(std::string_view s) {
  for (auto st : {JobState::kPending, JobState::kQueued, JobState::kRunning, JobState::kSucceeded,
                  JobState::kFailed, JobState::kCancelled, JobState::kLost}) {
    if (to_string(st) == s) return st;
  }
  return std::nullopt;
}

bool is_terminal(JobState s) {
  return s == JobState::kSucceeded || s == JobState::kFailed || s == JobState::kCancelled ||
         s == JobState::kLost;
}

namespace {

// Each entry moves the schema one version up; never edit one that has shipped.
constexpr std::array<const char*, 5> kMigrations = {
    R"sql(
CREATE TABLE jobs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL,
  spec TEXT NOT NULL,
  spec_file TEXT NOT NULL DEFAULT '',
  state TEXT NOT NULL,
  environment TEXT NOT NULL,
  rule TEXT NOT NULL,
  spot INTEGER NOT NULL DEFAULT 0,
  decision TEXT NOT NULL,
  reason TEXT NOT NULL DEFAULT '',
  priority INTEGER NOT NULL DEFAULT 0,
  gpus TEXT NOT NULL DEFAULT '[]',
  pid INTEGER,
  pid_start INTEGER,
  pgid INTEGER,
  exit_code INTEGER,
  signal INTEGER,
  cancel_requested INTEGER NOT NULL DEFAULT 0,
  created_at REAL NOT NULL,
  queued_at REAL,
  started_at REAL,
  ended_at REAL,
  job_dir TEXT NOT NULL DEFAULT '',
  workdir TEXT NOT NULL DEFAULT ''
);
CREATE INDEX jobs_by_state ON jobs(state, environment, id);
)sql",
    // 2: jobs handed to a cloud target (Slurm): which target, the engine's job id, how often
    // it was preempted and restarted, and what it cost.
    R"sql(
ALTER TABLE jobs ADD COLUMN target TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN remote_id TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN restarts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN cost_usd REAL;
)sql",
    // 3: spend across preemptions (the cost of the runs before the current one, and when the
    // current one started) and the outputs brought back from a cloud job.
    R"sql(
ALTER TABLE jobs ADD COLUMN cost_prior_usd REAL NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN segment_start REAL;
ALTER TABLE jobs ADD COLUMN outputs_bytes INTEGER;
ALTER TABLE jobs ADD COLUMN outputs_files INTEGER;
CREATE INDEX jobs_by_end ON jobs(ended_at);
)sql",
    // 4: pipelines: the jobs a job waits for, the pipeline it belongs to, and whether it is
    // still held back from its executor.
    R"sql(
ALTER TABLE jobs ADD COLUMN after_ids TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN pipeline TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN held INTEGER NOT NULL DEFAULT 0;
)sql",
    // 5: schedules, and the schedule and planned time of the jobs they start.
    R"sql(
CREATE TABLE schedules (
  name TEXT PRIMARY KEY,
  source TEXT NOT NULL,
  definition TEXT NOT NULL,
  suspended INTEGER NOT NULL DEFAULT 0,
  last_planned REAL,
  last_job INTEGER,
  missed INTEGER NOT NULL DEFAULT 0,
  created_at REAL NOT NULL,
  updated_at REAL NOT NULL
);
ALTER TABLE jobs ADD COLUMN schedule TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN planned_at REAL;
CREATE INDEX jobs_by_schedule ON jobs(schedule, id) WHERE schedule != '';
)sql",
};

std::string ids_text(const std::vector<std::int64_t>& ids) {
  std::string out;
  for (auto id : ids) out += (out.empty() ? "" : ",") + std::to_string(id);
  return out;
}

std::vector<std::int64_t> ids_from(const std::string& text) {
  std::vector<std::int64_t> out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto comma = text.find(',', pos);
    std::string part = text.substr(pos, comma == std::string::npos ? comma : comma - pos);
    if (!part.empty()) out.push_back(std::stoll(part));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

constexpr const char* kColumns =
    "id, name, spec, spec_file, state, environment, rule, spot, decision, reason, priority, gpus, "
    "pid, pid_start, pgid, exit_code, signal, cancel_requested, created_at, queued_at, started_at, "
    "ended_at, job_dir, workdir, target, remote_id, restarts, cost_usd, cost_prior_usd, "
    "segment_start, outputs_bytes, outputs_files, after_ids, pipeline, held, schedule, planned_at";

JobRecord read_row(sqlite3_stmt* s) {
  JobRecord j;
  j.id = sqlite3_column_int64(s, 0);
  j.name = text(s, 1);
  j.spec = text(s, 2);
  j.spec_file = text(s, 3);
  j.state = job_state_from(text(s, 4)).value_or(JobState::kLost);
  j.environment = text(s, 5);
  j.rule = text(s, 6);
  j.spot = sqlite3_column_int(s, 7) != 0;
  j.decision = text(s, 8);
  j.reason = text(s, 9);
  j.priority = sqlite3_column_int(s, 10);
  j.gpus = text(s, 11);
  j.pid = opt_int(s, 12);
  j.pid_start = opt_int(s, 13);
  j.pgid = opt_int(s, 14);
  if (auto v = opt_int(s, 15)) j.exit_code = static_cast<int>(*v);
  if (auto v = opt_int(s, 16)) j.signal = static_cast<int>(*v);
  j.cancel_requested = sqlite3_column_int(s, 17) != 0;
  j.created_at = sqlite3_column_double(s, 18);
  j.queued_at = opt_real(s, 19);
  j.started_at = opt_real(s, 20);
  j.ended_at = opt_real(s, 21);
  j.job_dir = text(s, 22);
  j.workdir = text(s, 23);
  j.target = text(s, 24);
  j.remote_id = text(s, 25);
  j.restarts = sqlite3_column_int(s, 26);
  j.cost_usd = opt_real(s, 27);
  j.cost_prior_usd = sqlite3_column_double(s, 28);
  j.segment_start = opt_real(s, 29);
  j.outputs_bytes = opt_int(s, 30);
  if (auto v = opt_int(s, 31)) j.outputs_files = *v;
  j.after = ids_from(text(s, 32));
  j.pipeline = text(s, 33);
  j.held = sqlite3_column_int(s, 34) != 0;
  j.schedule = text(s, 35);
  j.planned_at = opt_real(s, 36);
  return j;
}

Result<std::vector<JobRecord>> collect(Stmt& st, sqlite3* db) {
  std::vector<JobRecord> out;
  int rc;
  while ((rc = st.step()) == SQLITE_ROW) out.push_back(read_row(st.get()));
  if (rc != SQLITE_DONE) return db_error(db, "read jobs");
  return out;
}

}  // namespace

namespace {

// The database holds every job's spec and environment: readable by its owner only. The
// file is made here, mode 0600 whatever the umask, and an existing one (from a version
// that let SQLite create it 0644) is narrowed. SQLite gives the -wal and -shm files it
// creates the database file's mode; ones already there are narrowed too.
Result<bool> make_private(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0 || ::fchmod(fd, 0600) != 0) {
    std::string why = std::strerror(errno);
    if (fd >= 0) ::close(fd);
    return Error{Errc::kIo, fmt::format("cannot create the state database {}: {}", path, why)};
  }
  ::close(fd);
  for (const char* suffix : {"-wal", "-shm"}) {
    std::string side = path + suffix;
    if (::chmod(side.c_str(), 0600) != 0 && errno != ENOENT) {
      return Error{Errc::kIo,
                   fmt::format("cannot make {} private: {}", side, std::strerror(errno))};
    }
  }
  return true;
}

}  // namespace

Result<std::unique_ptr<Store>> Store::open(const std::string& path) {
  if (auto p = make_private(path); !p) return p.error();
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return Error{Errc::kIo, fmt::format("cannot open the state database {}: {}", path, msg)};
  }
  std::unique_ptr<Store> store(new Store(db));
  sqlite3_busy_timeout(db, 5000);
  // WAL: a commit survives a kill -9 of the process; NORMAL sync is enough for that.
  for (const char* pragma :
       {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA foreign_keys=ON"}) {
    if (sqlite3_exec(db, pragma, nullptr, nullptr, nullptr) != SQLITE_OK) {
      return db_error(db, fmt::format("{} ({})", pragma, path));
    }
  }
  if (auto m = store->migrate(); !m) return m.error();
  return store;
}

Store::~Store() { sqlite3_close(db_); }

int Store::schema_version() const {
  Stmt st(db_, "PRAGMA user_version");
  return st.ok() && st.step() == SQLITE_ROW ? sqlite3_column_int(st.get(), 0) : -1;
}

Result<bool> Store::migrate() {
  int version = schema_version();
  if (version > static_cast<int>(kMigrations.size())) {
    return Error{Errc::kIo,
                 fmt::format("the state database has schema version {}, newer than this hylab "
                             "knows ({}): upgrade hylab",
                             version, kMigrations.size())};
  }
  for (int v = version; v < static_cast<int>(kMigrations.size()); ++v) {
    std::string sql =
        fmt::format("BEGIN IMMEDIATE; {} PRAGMA user_version={}; COMMIT;", kMigrations[v], v + 1);
    char* err = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err ? err : "unknown error";
      sqlite3_free(err);
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      return Error{Errc::kIo,
                   fmt::format("state database: migration to version {} failed: {}", v + 1, msg)};
    }
  }
  return true;
}

Result<std::int64_t> Store::insert_job(const JobRecord& j) {
  Stmt st(db_,
          "INSERT INTO jobs (name, spec, spec_file, state, environment, rule, spot, decision, "
          "reason, priority, "
          "gpus, created_at, queued_at, job_dir, workdir, after_ids, pipeline, held, schedule, "
          "planned_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
  if (!st.ok()) return db_error(db_, "insert job");
  st.bind(1, j.name);
  st.bind(2, j.spec);
  st.bind(3, j.spec_file);
  st.bind(4, std::string(to_string(j.state)));
  st.bind(5, j.environment);
  st.bind(6, j.rule);
  st.bind(7, static_cast<std::int64_t>(j.spot));
  st.bind(8, j.decision);
  st.bind(9, j.reason);
  st.bind(10, static_cast<std::int64_t>(j.priority));
  st.bind(11, j.gpus.empty() ? std::string("[]") : j.gpus);
  st.bind(12, j.created_at);
  st.bind(13, j.queued_at);
  st.bind(14, j.job_dir);
  st.bind(15, j.workdir);
  st.bind(16, ids_text(j.after));
  st.bind(17, j.pipeline);
  st.bind(18, static_cast<std::int64_t>(j.held));
  st.bind(19, j.schedule);
  st.bind(20, j.planned_at);
  if (st.step() != SQLITE_DONE) return db_error(db_, "insert job");
  return static_cast<std::int64_t>(sqlite3_last_insert_rowid(db_));
}

// Inside a transaction the caller holds.
Result<std::vector<std::int64_t>> Store::insert_jobs(std::vector<JobRecord>& jobs, bool chained) {
  std::vector<std::int64_t> ids;
  for (auto& j : jobs) {
    if (chained && !ids.empty()) {
      j.after = {ids.back()};
      j.held = true;
    }
    auto id = insert_job(j);
    if (!id) return id.error();
    ids.push_back(*id);
  }
  return ids;
}

namespace {
// BEGIN IMMEDIATE ... COMMIT around `body`; rolled back when it fails.
template <class T, class F>
Result<T> in_transaction(sqlite3* db, std::string_view what, F&& body) {
  if (sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK)
    return db_error(db, what);
  Result<T> r = body();
  if (!r) {
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    return r;
  }
  if (sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
    Error e = db_error(db, what);
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    return e;
  }
  return r;
}
}  // namespace

Result<std::vector<std::int64_t>> Store::insert_chain(std::vector<JobRecord> jobs, bool chained) {
  return in_transaction<std::vector<std::int64_t>>(db_, "insert pipeline",
                                                   [&] { return insert_jobs(jobs, chained); });
}

Result<JobRecord> Store::get_job(std::int64_t id) const {
  Stmt st(db_, fmt::format("SELECT {} FROM jobs WHERE id = ?", kColumns).c_str());
  if (!st.ok()) return db_error(db_, "get job");
  st.bind(1, id);
  int rc = st.step();
  if (rc == SQLITE_ROW) return read_row(st.get());
  if (rc == SQLITE_DONE) return Error{Errc::kNotFound, fmt::format("no job with id {}", id)};
  return db_error(db_, "get job");
}

Result<std::vector<JobRecord>> Store::list_jobs(const JobFilter& f) const {
  std::string sql = fmt::format("SELECT {} FROM jobs WHERE id > ?1", kColumns);
  if (f.state) sql += " AND state = ?2";
  if (f.environment) sql += " AND environment = ?3";
  if (f.schedule) sql += " AND schedule = ?5";
  sql += " ORDER BY id LIMIT ?4";
  Stmt st(db_, sql.c_str());
  if (!st.ok()) return db_error(db_, "list jobs");
  st.bind(1, f.after_id);
  if (f.state) st.bind(2, std::string(to_string(*f.state)));
  if (f.environment) st.bind(3, *f.environment);
  if (f.schedule) st.bind(5, *f.schedule);
  st.bind(4, static_cast<std::int64_t>(f.limit));
  return collect(st, db_);
}

Result<std::vector<JobRecord>> Store::jobs_in_state(JobState state) const {
  Stmt st(db_,
          fmt::format("SELECT {} FROM jobs WHERE state = ? ORDER BY priority DESC, id", kColumns)
              .c_str());
  if (!st.ok()) return db_error(db_, "list jobs");
  st.bind(1, std::string(to_string(state)));
  return collect(st, db_);
}

Result<std::vector<JobRecord>> Store::jobs_active_since(double since) const {
  Stmt st(db_, fmt::format("SELECT {} FROM jobs WHERE started_at IS NOT NULL AND (ended_at IS "
                           "NULL OR ended_at >= ?) ORDER BY id",
                           kColumns)
                   .c_str());
  if (!st.ok()) return db_error(db_, "list jobs");
  st.bind(1, since);
  return collect(st, db_);
}

Result<bool> Store::update_job(const JobRecord& j) {
  Stmt st(db_,
          "UPDATE jobs SET state=?, reason=?, gpus=?, pid=?, pid_start=?, pgid=?, exit_code=?, "
          "signal=?, "
          "cancel_requested=?, queued_at=?, started_at=?, ended_at=?, job_dir=?, target=?, "
          "remote_id=?, restarts=?, cost_usd=?, spot=?, cost_prior_usd=?, segment_start=?, "
          "outputs_bytes=?, outputs_files=?, held=? WHERE id=?");
  if (!st.ok()) return db_error(db_, "update job");
  st.bind(1, std::string(to_string(j.state)));
  st.bind(2, j.reason);
  st.bind(3, j.gpus.empty() ? std::string("[]") : j.gpus);
  st.bind(4, j.pid);
  st.bind(5, j.pid_start);
  st.bind(6, j.pgid);
  st.bind(7, j.exit_code);
  st.bind(8, j.signal);
  st.bind(9, static_cast<std::int64_t>(j.cancel_requested));
  st.bind(10, j.queued_at);
  st.bind(11, j.started_at);
  st.bind(12, j.ended_at);
  st.bind(13, j.job_dir);
  st.bind(14, j.target);
  st.bind(15, j.remote_id);
  st.bind(16, static_cast<std::int64_t>(j.restarts));
  st.bind(17, j.cost_usd);
  st.bind(18, static_cast<std::int64_t>(j.spot));
  st.bind(19, j.cost_prior_usd);
  st.bind(20, j.segment_start);
  st.bind(21, j.outputs_bytes);
  st.bind(22, j.outputs_files);
  st.bind(23, static_cast<std::int64_t>(j.held));
  st.bind(24, j.id);
  if (st.step() != SQLITE_DONE) return db_error(db_, "update job");
  if (sqlite3_changes(db_) == 0)
    return Error{Errc::kNotFound, fmt::format("no job with id {}", j.id)};
  if (on_ended_ && is_terminal(j.state)) on_ended_(j);
  return true;
}

Result<std::vector<StateCount>> Store::count_by_state() const {
  Stmt st(db_, "SELECT state, environment, COUNT(*) FROM jobs GROUP BY state, environment");
  if (!st.ok()) return db_error(db_, "count jobs");
  std::vector<StateCount> out;
  int rc;
  while ((rc = st.step()) == SQLITE_ROW) {
    out.push_back({text(st.get(), 0), text(st.get(), 1), sqlite3_column_int64(st.get(), 2)});
  }
  if (rc != SQLITE_DONE) return db_error(db_, "count jobs");
  return out;
}

namespace {

constexpr const char* kScheduleColumns =
    "name, source, definition, suspended, last_planned, last_job, missed, created_at, updated_at";

ScheduleRecord read_schedule_row(sqlite3_stmt* s) {
  ScheduleRecord r;
  r.name = text(s, 0);
  r.source = text(s, 1);
  r.definition = text(s, 2);
  r.suspended = sqlite3_column_int(s, 3) != 0;
  r.last_planned = opt_real(s, 4);
  r.last_job = opt_int(s, 5);
  r.missed = sqlite3_column_int64(s, 6);
  r.created_at = sqlite3_column_double(s, 7);
  r.updated_at = sqlite3_column_double(s, 8);
  return r;
}

}  // namespace

Result<bool> Store::put_schedule(const ScheduleRecord& r) {
  Stmt st(db_,
          "INSERT INTO schedules (name, source, definition, suspended, created_at, updated_at) "
          "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(name) DO UPDATE SET "
          "suspended = CASE WHEN definition = excluded.definition THEN suspended ELSE "
          "excluded.suspended END, source = excluded.source, definition = excluded.definition, "
          "updated_at = excluded.updated_at");
  if (!st.ok()) return db_error(db_, "put schedule");
  st.bind(1, r.name);
  st.bind(2, r.source);
  st.bind(3, r.definition);
  st.bind(4, static_cast<std::int64_t>(r.suspended));
  st.bind(5, r.created_at);
  st.bind(6, r.updated_at);
  if (st.step() != SQLITE_DONE) return db_error(db_, "put schedule");
  return true;
}

Result<ScheduleRecord> Store::get_schedule(const std::string& name) const {
  Stmt st(db_, fmt::format("SELECT {} FROM schedules WHERE name = ?", kScheduleColumns).c_str());
  if (!st.ok()) return db_error(db_, "get schedule");
  st.bind(1, name);
  int rc = st.step();
  if (rc == SQLITE_ROW) return read_schedule_row(st.get());
  if (rc == SQLITE_DONE) return Error{Errc::kNotFound, fmt::format("no schedule named '{}'", name)};
  return db_error(db_, "get schedule");
}

Result<std::vector<ScheduleRecord>> Store::list_schedules() const {
  Stmt st(db_, fmt::format("SELECT {} FROM schedules ORDER BY name", kScheduleColumns).c_str());
  if (!st.ok()) return db_error(db_, "list schedules");
  std::vector<ScheduleRecord> out;
  int rc;
  while ((rc = st.step()) == SQLITE_ROW) out.push_back(read_schedule_row(st.get()));
  if (rc != SQLITE_DONE) return db_error(db_, "list schedules");
  return out;
}

Result<bool> Store::delete_schedule(const std::string& name) {
  Stmt st(db_, "DELETE FROM schedules WHERE name = ?");
  if (!st.ok()) return db_error(db_, "delete schedule");
  st.bind(1, name);
  if (st.step() != SQLITE_DONE) return db_error(db_, "delete schedule");
  if (sqlite3_changes(db_) == 0)
    return Error{Errc::kNotFound, fmt::format("no schedule named '{}'", name)};
  return true;
}

Result<bool> Store::set_schedule_suspended(const std::string& name, bool suspended) {
  Stmt st(db_, "UPDATE schedules SET suspended = ? WHERE name = ?");
  if (!st.ok()) return db_error(db_, "suspend schedule");
  st.bind(1, static_cast<std::int64_t>(suspended));
  st.bind(2, name);
  if (st.step() != SQLITE_DONE) return db_error(db_, "suspend schedule");
  if (sqlite3_changes(db_) == 0)
    return Error{Errc::kNotFound, fmt::format("no schedule named '{}'", name)};
  return true;
}

Result<std::vector<std::int64_t>> Store::record_firing(const std::string& schedule, double planned,
                                                       std::vector<JobRecord> jobs, bool chained,
                                                       std::int64_t missed) {
  return in_transaction<std::vector<std::int64_t>>(
      db_, "record a firing", [&]() -> Result<std::vector<std::int64_t>> {
        for (auto& j : jobs) {
          j.schedule = schedule;
          j.planned_at = planned;
        }
        auto ids = insert_jobs(jobs, chained);
        if (!ids) return ids;
        Stmt st(db_,
                "UPDATE schedules SET last_planned = ?1, missed = missed + ?2, "
                "last_job = COALESCE(?3, last_job) WHERE name = ?4");
        if (!st.ok()) return db_error(db_, "record a firing");
        st.bind(1, planned);
        st.bind(2, missed);
        st.bind(3, ids->empty() ? std::optional<std::int64_t>() : ids->front());
        st.bind(4, schedule);
        if (st.step() != SQLITE_DONE) return db_error(db_, "record a firing");
        if (sqlite3_changes(db_) == 0)
          return Error{Errc::kNotFound, fmt::format("no schedule named '{}'", schedule)};
        return ids;
      });
}

Result<std::vector<JobRecord>> Store::active_jobs_of(const std::string& schedule) const {
  Stmt st(db_, fmt::format("SELECT {} FROM jobs WHERE schedule = ? AND state IN ('pending', "
                           "'queued', 'running') ORDER BY id",
                           kColumns)
                   .c_str());
  if (!st.ok()) return db_error(db_, "list jobs");
  st.bind(1, schedule);
  return collect(st, db_);
}

Result<std::vector<JobRecord>> Store::prune_schedule_jobs(const std::string& schedule,
                                                          int succeeded, int failed) {
  Stmt st(db_, fmt::format("SELECT {} FROM jobs WHERE schedule = ? AND state IN ('succeeded', "
                           "'failed', 'cancelled', 'lost') ORDER BY id DESC",
                           kColumns)
                   .c_str());
  if (!st.ok()) return db_error(db_, "list jobs");
  st.bind(1, schedule);
  auto ended = collect(st, db_);
  if (!ended) return ended;
  std::vector<JobRecord> gone;
  int kept_ok = 0, kept_bad = 0;
  for (auto& j : *ended) {
    bool ok = j.state == JobState::kSucceeded;
    int& kept = ok ? kept_ok : kept_bad;
    if (kept < (ok ? succeeded : failed)) {
      ++kept;
      continue;
    }
    gone.push_back(std::move(j));
  }
  if (gone.empty()) return gone;
  auto done = in_transaction<bool>(db_, "prune jobs", [&]() -> Result<bool> {
    for (const auto& j : gone) {
      Stmt del(db_, "DELETE FROM jobs WHERE id = ?");
      if (!del.ok()) return db_error(db_, "prune jobs");
      del.bind(1, j.id);
      if (del.step() != SQLITE_DONE) return db_error(db_, "prune jobs");
    }
    return true;
  });
  if (!done) return done.error();
  return gone;
}

}  // namespace hylab::store
