#include "exec/local/executor.h"

#include <fmt/format.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>

#include "common/clock.h"
#include "common/gpu.h"
#include "common/job_spec.h"
#include "exec/local/process.h"

extern char** environ;

namespace hylab::exec::local {

namespace asio = boost::asio;
namespace json = boost::json;
using store::JobRecord;
using store::JobState;

namespace {

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

// How long the processes of a job whose shim is gone may take to die after SIGKILL (they
// may be in the middle of a driver call) before serve starts without them.
constexpr std::chrono::milliseconds kOrphanKillDeadline{5000};

struct Allocation {
  enum class Kind { kNow, kWait, kNever } kind = Kind::kNever;
  std::vector<std::size_t> gpus;  // indexes into Inventory::gpus
  std::string why_never;
};

}  // namespace

class LocalExecutor::Impl {
 public:
  Impl(asio::io_context& ioc, store::Store& store, const Config& cfg, Options opts)
      : ioc_(ioc), store_(store), cfg_(cfg), opts_(std::move(opts)) {
    GpuDiscovery found;
    if (opts_.use_nvml) found = discover_gpus(cfg_.catalog);
    if (found.nvml && !found.gpus.empty()) {
      inv_.source = "nvml";
      inv_.detail = found.detail;
      for (const auto& g : found.gpus)
        inv_.gpus.push_back({g.index, g.uuid, g.model, g.memory_bytes, 0});
    } else {
      inv_.source = "config";
      inv_.detail =
          opts_.use_nvml ? (found.nvml ? "NVML found no GPUs" : found.detail) : "NVML disabled";
      int index = 0;
      for (const auto& g : cfg_.lab.gpus) {
        for (int i = 0; i < g.count; ++i, ++index) {
          inv_.gpus.push_back({index, fmt::format("config-{}", index), g.model, g.memory_bytes, 0});
        }
      }
    }
    std::filesystem::create_directories(opts_.jobs_dir);
  }

  ~Impl() {
    for (auto& [id, w] : watches_) w->cancel();
    for (auto& [id, t] : timers_) t->cancel();
  }

  void recover() {
    auto running = store_.jobs_in_state(JobState::kRunning);
    std::vector<JobRecord> orphans;  // their shims are gone
    if (running) {
      for (auto& job : *running) {
        if (job.environment == "cloud") continue;  // the cloud executor's
        for (std::size_t i : gpus_of(job)) inv_.gpus[i].job = job.id;
        pid_t pid = static_cast<pid_t>(job.pid.value_or(0));
        if (pid <= 0 && !job.job_dir.empty()) {
          // Started, but the server stopped before it recorded the pid.
          if (auto shim = running_shim(job.job_dir)) {
            pid = *shim;
            job.pid = pid;
            job.pid_start = process_start_time(pid);
            (void)store_.update_job(job);
          }
        }
        if (pid > 0 && job.pid_start && same_process(pid, *job.pid_start)) {
          watch(job.id, pid, /*child=*/false, job.pid_start);
        } else {
          orphans.push_back(std::move(job));
        }
      }
    }
    stop_orphans(orphans);
    // Jobs the server recorded but had not handed over before it stopped.
    if (auto pending = store_.jobs_in_state(JobState::kPending)) {
      for (auto& job : *pending) {
        if (job.held) continue;  // waits for the jobs before it (the router releases it)
        if (job.environment == "local" || job.environment == "hybrid") (void)submit(job.id);
      }
    }
    schedule();
  }

  Result<bool> submit(std::int64_t id) {
    auto job = store_.get_job(id);
    if (!job) return job.error();
    job->state = JobState::kQueued;
    job->queued_at = now_seconds();
    if (auto u = store_.update_job(*job); !u) return u.error();
    schedule();
    return true;
  }

  Result<JobRecord> cancel(std::int64_t id) {
    auto job = store_.get_job(id);
    if (!job) return job.error();
    if (store::is_terminal(job->state)) {
      return Error{Errc::kInvalidInput,
                   fmt::format("job {} has already ended ({})", id, store::to_string(job->state))};
    }
    if (job->state == JobState::kRunning) {
      job->cancel_requested = true;
      if (auto u = store_.update_job(*job); !u) return u.error();
      pid_t pid = static_cast<pid_t>(job->pid.value_or(0));
      // The shim forwards SIGTERM to the job's process group and sends SIGKILL after
      // the grace period, even if this server is gone by then.
      if (pid > 0 && job->pid_start && same_process(pid, *job->pid_start)) ::kill(pid, SIGTERM);
      return *job;
    }
    job->state = JobState::kCancelled;
    job->cancel_requested = true;
    job->ended_at = now_seconds();
    job->reason = "cancelled before it started";
    if (auto u = store_.update_job(*job); !u) return u.error();
    schedule();
    return *job;
  }

  Inventory inventory() const { return inv_; }

  // Plays the queue forward: each running job frees its GPUs when its `hours` are up, each
  // queued job (in order: none starts before the one ahead of it) takes the GPUs that free
  // first, then the new job does. Jobs without hours make the wait unknown.
  WaitEstimate local_wait(const JobSpec& spec) const {
    constexpr double kUnknown = std::numeric_limits<double>::infinity();
    const double now = now_seconds();
    std::vector<double> free_at(inv_.gpus.size(), 0);  // hours from now
    std::vector<std::int64_t> holder(inv_.gpus.size(), 0);
    std::map<std::int64_t, std::string> no_hours;  // job -> name
    for (std::size_t i = 0; i < inv_.gpus.size(); ++i) {
      std::int64_t id = inv_.gpus[i].job;
      if (id == 0) continue;
      holder[i] = id;
      auto job = store_.get_job(id);
      std::optional<double> hours;
      if (job) hours = spec_hours(*job);
      if (job && hours && job->started_at) {
        free_at[i] = std::max(0.0, *job->started_at + *hours * 3600 - now) / 3600;
      } else {
        free_at[i] = kUnknown;
        no_hours[id] = job ? job->name : "";
      }
    }
    double last_start = 0;
    int ahead = 0;
    if (auto queued = store_.jobs_in_state(JobState::kQueued)) {
      for (const auto& job : *queued) {
        if (job.environment == "cloud") continue;
        Diagnostics diag;
        auto s = load_job_spec_text(job.spec, "job", cfg_.catalog, diag);
        if (!s) continue;
        auto gpus = earliest(*s, free_at);
        if (!gpus) continue;  // the lab can never hold it: it will fail, not wait
        ++ahead;
        double start = std::max(last_start, gpus->first);
        last_start = start;
        for (std::size_t i : gpus->second) {
          if (s->hours) {
            free_at[i] = start + *s->hours;
          } else {
            free_at[i] = kUnknown;
            no_hours[job.id] = job.name;
          }
          holder[i] = job.id;
        }
      }
    }
    WaitEstimate w;
    auto mine = earliest(spec, free_at);
    if (!mine) return w;  // needs no GPUs, or more than the lab has: not a matter of waiting
    w.hours = std::max(last_start, mine->first);
    std::map<std::int64_t, std::string> blocking;
    for (std::size_t i : mine->second) {
      if (holder[i] != 0) blocking[holder[i]] = "";
    }
    std::string jobs;
    for (const auto& [id, n] : blocking) jobs += fmt::format("{}{}", jobs.empty() ? "" : ", ", id);
    if (std::isinf(w.hours)) {
      w.known = false;
      std::string which;
      for (const auto& [id, name] : no_hours)
        which += fmt::format("{}job {}{}", which.empty() ? "" : ", ", id,
                             name.empty() ? "" : " (" + name + ")");
      w.detail = fmt::format(
          "the lab's GPUs it needs are held by jobs without `hours` ({}), so its wait cannot be "
          "estimated",
          which);
    } else if (w.hours > 0) {
      w.detail = fmt::format("the GPUs it needs free in ~{:.1f} h (held by job {}{})", w.hours,
                             jobs, ahead > 0 ? fmt::format("; {} queued ahead of it", ahead) : "");
    }
    return w;
  }

 private:
  std::vector<std::size_t> gpus_of(const JobRecord& job) const {
    std::vector<std::size_t> out;
    boost::system::error_code ec;
    json::value v = json::parse(job.gpus, ec);
    if (ec || !v.is_array()) return out;
    for (const auto& g : v.as_array()) {
      if (!g.is_object() || !g.as_object().contains("index")) continue;
      auto idx = g.at("index").to_number<std::int64_t>();
      for (std::size_t i = 0; i < inv_.gpus.size(); ++i) {
        if (inv_.gpus[i].index == idx) out.push_back(i);
      }
    }
    return out;
  }

  std::optional<double> spec_hours(const JobRecord& job) const {
    Diagnostics diag;
    auto s = load_job_spec_text(job.spec, "job", cfg_.catalog, diag);
    return s ? s->hours : std::nullopt;
  }

  // The lab GPUs that could hold one accelerator request: the model itself first, then
  // any with at least its memory (as allocate() chooses).
  // The lab's GPUs that can serve one alternative: its model first, then any card with as
  // much memory; for a count of any model, every card with the memory asked. None for an
  // alternative pinned to a cloud or an accelerator only a cloud has.
  std::vector<std::size_t> eligible(const JobSpec& spec, const AcceleratorRequest& req) const {
    std::vector<std::size_t> out;
    if (!spec.pins_of(req).empty()) return out;
    if (req.any_model()) {
      for (std::size_t i = 0; i < inv_.gpus.size(); ++i) {
        if (inv_.gpus[i].memory_bytes >= req.min_memory_bytes) out.push_back(i);
      }
      return out;
    }
    const GpuModel* want = cfg_.catalog.find_gpu(req.model);
    if (!want || want->cloud_only()) return out;
    for (int exact = 1; exact >= 0; --exact) {
      for (std::size_t i = 0; i < inv_.gpus.size(); ++i) {
        const auto& g = inv_.gpus[i];
        bool is_exact = g.model == want->name;
        if ((exact && is_exact) || (!exact && !is_exact && g.memory_bytes >= want->memory_bytes))
          out.push_back(i);
      }
    }
    return out;
  }

  // When (hours from now) the job could start given when each GPU frees, and on which
  // GPUs; nothing when it needs no GPUs or more than the lab has.
  std::optional<std::pair<double, std::vector<std::size_t>>> earliest(
      const JobSpec& spec, const std::vector<double>& free_at) const {
    std::optional<std::pair<double, std::vector<std::size_t>>> best;
    for (const auto& req : spec.accelerators) {
      std::size_t need =
          static_cast<std::size_t>(req.count) * static_cast<std::size_t>(spec.num_nodes);
      auto e = eligible(spec, req);
      if (need == 0 || e.size() < need) continue;
      std::stable_sort(e.begin(), e.end(),
                       [&](std::size_t a, std::size_t b) { return free_at[a] < free_at[b]; });
      e.resize(need);
      double start = free_at[e.back()];
      if (!best || start < best->first) best.emplace(start, std::move(e));
    }
    return best;
  }

  void release(std::int64_t id) {
    for (auto& g : inv_.gpus) {
      if (g.job == id) g.job = 0;
    }
  }

  Allocation allocate(const JobSpec& spec) const {
    Allocation a;
    if (spec.accelerators.empty()) {
      a.kind = Allocation::Kind::kNow;
      return a;
    }
    std::vector<std::string> nevers;
    bool any_wait = false;
    for (const auto& req : spec.accelerators) {
      std::size_t need =
          static_cast<std::size_t>(req.count) * static_cast<std::size_t>(spec.num_nodes);
      std::vector<std::size_t> eligible = this->eligible(spec, req);
      if (eligible.size() < need) {
        nevers.push_back(fmt::format("{}x {} (the lab has {} such GPUs)", need,
                                     req.any_model() ? "any GPU" : req.model, eligible.size()));
        continue;
      }
      std::vector<std::size_t> free;
      for (std::size_t i : eligible) {
        if (inv_.gpus[i].job == 0) free.push_back(i);
      }
      if (free.size() >= need) {
        a.kind = Allocation::Kind::kNow;
        a.gpus.assign(free.begin(), free.begin() + static_cast<long>(need));
        return a;
      }
      any_wait = true;
    }
    a.kind = any_wait ? Allocation::Kind::kWait : Allocation::Kind::kNever;
    for (std::size_t i = 0; i < nevers.size(); ++i) a.why_never += (i ? ", " : "") + nevers[i];
    return a;
  }

  // Starts queued jobs in order (priority, then FIFO) while GPUs allow; the first job
  // that must wait holds back the ones behind it, so no job is passed over forever.
  void schedule() {
    auto queued = store_.jobs_in_state(JobState::kQueued);
    if (!queued) return;
    for (auto& job : *queued) {
      if (job.environment == "cloud") continue;  // queued on a cloud target, not here
      Diagnostics diag;
      auto spec = load_job_spec_text(job.spec, job.spec_file.empty() ? "job" : job.spec_file,
                                     cfg_.catalog, diag);
      if (!spec) {
        fail_to_start(job, "its spec no longer loads: " + diag.str());
        continue;
      }
      Allocation a = allocate(*spec);
      if (a.kind == Allocation::Kind::kWait) break;
      if (a.kind == Allocation::Kind::kNever) {
        fail_to_start(job,
                      "the lab's GPUs (" + inv_.source + ") cannot hold it: needs " + a.why_never);
        continue;
      }
      start(job, *spec, a);
    }
  }

  // Jobs whose shim was gone when serve started. Whatever they left running is stopped
  // before their GPUs go to another job, which would otherwise share them, memory and
  // all, with processes nobody supervises.
  void stop_orphans(std::vector<JobRecord>& jobs) {
    if (jobs.empty()) return;
    std::vector<pid_t> sessions;
    for (auto& job : jobs) {
      // The pgid is known to the shim alone, which wrote it to shim.json; kept in the row
      // from now on.
      auto info = job.job_dir.empty() ? std::nullopt : read_shim_info(job.job_dir);
      if (info && !job.pgid) job.pgid = info->pgid;
      pid_t shim = static_cast<pid_t>(job.pid.value_or(0));
      if (shim <= 0 && info) shim = info->pid;
      sessions.push_back(shim);
    }
    auto grace = std::chrono::milliseconds(std::llround(opts_.cancel_grace_seconds * 1000));
    auto stops = stop_sessions(sessions, grace, kOrphanKillDeadline);
    for (std::size_t i = 0; i < jobs.size(); ++i) {
      JobRecord& job = jobs[i];
      const SessionStop& stop = stops[i];
      if (auto st = read_exit_status(job.job_dir)) {
        finish(job, *st);  // it ended while serve was down; stop took what it left behind
        continue;
      }
      job.state = JobState::kLost;
      job.ended_at = now_seconds();
      if (stop.signalled > 0) {
        std::string what = job.pgid ? fmt::format("its process group {}", *job.pgid)
                                    : fmt::format("its processes (session {})", stop.sid);
        job.reason = fmt::format(
            "its supervisor (pid {}) was gone when hylab serve started; {} was killed ({} "
            "process{})",
            stop.sid, what, stop.signalled, stop.signalled == 1 ? "" : "es");
      } else {
        job.reason = stop.sid > 0 ? fmt::format(
                                        "its process (pid {}) vanished while hylab serve was "
                                        "down, without recording an exit status",
                                        stop.sid)
                                  : "hylab serve stopped while starting it";
      }
      if (stop.left.empty()) {
        release(job.id);
      } else {
        // Still on its GPUs: handing them out would fail the next job, not this one.
        job.reason += fmt::format(
            "; {} of them outlived SIGKILL for {}s (pid {}...): its GPUs stay reserved until "
            "hylab serve restarts",
            stop.left.size(), kOrphanKillDeadline.count() / 1000, stop.left.front());
      }
      (void)store_.update_job(job);
    }
  }

  void fail_to_start(JobRecord& job, std::string reason) {
    job.state = JobState::kFailed;
    job.ended_at = now_seconds();
    job.reason = std::move(reason);
    (void)store_.update_job(job);
  }

  void start(JobRecord& job, const JobSpec& spec, const Allocation& a) {
    std::string dir = fmt::format("{}/{}", opts_.jobs_dir, job.id);
    std::error_code ec;
    std::filesystem::create_directories(dir + "/outputs", ec);
    if (ec) {
      fail_to_start(job, fmt::format("cannot create {}: {}", dir, ec.message()));
      return;
    }
    Launch l;
    l.job_id = job.id;
    l.job_dir = dir;
    l.workdir = job.workdir.empty() ? dir : job.workdir;
    l.setup = spec.setup;
    l.run = spec.run;
    l.log_max_bytes = opts_.log_max_bytes;
    l.cancel_grace_seconds = opts_.cancel_grace_seconds;
    std::map<std::string, std::string> env;
    for (char** e = environ; *e; ++e) {
      std::string kv(*e);
      auto eq = kv.find('=');
      if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    for (const auto& [k, v] : spec.envs) {
      if (v) env[k] = *v;
    }
    env["HYLAB_JOB_ID"] = std::to_string(job.id);
    env["HYLAB_OUTPUT_DIR"] = dir + "/outputs";
    std::string visible;
    json::array gpus;
    for (std::size_t i : a.gpus) {
      const auto& g = inv_.gpus[i];
      if (!visible.empty()) visible += ',';
      visible += inv_.source == "nvml" ? g.uuid : std::to_string(g.index);
      gpus.emplace_back(json::object{{"index", g.index}, {"uuid", g.uuid}, {"model", g.model}});
    }
    // A job without GPUs sees none, not the ones given to other jobs.
    env["CUDA_VISIBLE_DEVICES"] = visible;
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID";
    l.env.reserve(env.size());
    for (const auto& [k, v] : env) l.env.push_back(fmt::format("{}={}", k, v));

    // Recorded as running before the process exists: a crash in between leaves a
    // running job without a pid, which the next start marks lost, never a second copy.
    job.job_dir = dir;
    job.gpus = json::serialize(gpus);
    job.state = JobState::kRunning;
    job.started_at = now_seconds();
    job.reason.clear();
    if (auto u = store_.update_job(job); !u) {
      job.state = JobState::kQueued;
      job.reason = "could not record the start: " + u.error().message;
      return;
    }
    auto pid = spawn_shim(l);
    if (!pid) {
      fail_to_start(job, pid.error().message);
      return;
    }
    for (std::size_t i : a.gpus) inv_.gpus[i].job = job.id;
    job.pid = *pid;
    job.pid_start = process_start_time(*pid);
    if (auto u = store_.update_job(job); !u) {
      // Without its pid on record the job could not be adopted later: stop it now.
      ::kill(*pid, SIGKILL);
    }
    watch(job.id, *pid, /*child=*/true, job.pid_start);
  }

  void watch(std::int64_t id, pid_t pid, bool child, std::optional<std::int64_t> start_time) {
    int fd = pidfd_open(pid);
    if (fd < 0) {
      poll_exit(id, pid, child, start_time);
      return;
    }
    auto sd = std::make_unique<asio::posix::stream_descriptor>(ioc_, fd);
    sd->async_wait(asio::posix::stream_descriptor::wait_read,
                   [this, id, pid, child](boost::system::error_code e) {
                     if (e == asio::error::operation_aborted) return;
                     on_exit(id, pid, child);
                   });
    watches_[id] = std::move(sd);
  }

  // Without a pidfd (a kernel before 5.3, or no descriptors left): check a few times a
  // second, without blocking the event loop.
  void poll_exit(std::int64_t id, pid_t pid, bool child, std::optional<std::int64_t> start_time) {
    bool gone = false;
    if (child) {
      int status = 0;
      gone = ::waitpid(pid, &status, WNOHANG) == pid;
    } else {
      gone = !start_time || !same_process(pid, *start_time);
    }
    if (gone) {
      on_exit(id, pid, /*child=*/false);  // already reaped
      return;
    }
    auto timer = std::make_shared<asio::steady_timer>(ioc_, std::chrono::milliseconds(200));
    timers_[id] = timer;
    timer->async_wait([this, id, pid, child, start_time](boost::system::error_code e) {
      if (!e) poll_exit(id, pid, child, start_time);
    });
  }

  void on_exit(std::int64_t id, pid_t pid, bool child) {
    if (child) {
      int status = 0;
      ::waitpid(pid, &status, 0);  // reap the shim; it has exited, so this does not block
    }
    watches_.erase(id);
    timers_.erase(id);
    auto job = store_.get_job(id);
    if (!job) return;
    auto st = read_exit_status(job->job_dir);
    if (st) {
      finish(*job, *st);
    } else if (job->cancel_requested) {
      job->state = JobState::kCancelled;
      job->ended_at = now_seconds();
      job->reason = "cancelled";
      release(id);
      (void)store_.update_job(*job);
    } else {
      job->state = JobState::kLost;
      job->ended_at = now_seconds();
      job->reason = fmt::format(
          "its supervisor process (pid {}) ended without recording an exit status", pid);
      release(id);
      (void)store_.update_job(*job);
    }
    schedule();
  }

  void finish(JobRecord& job, const ExitStatus& st) {
    job.exit_code = st.exit_code;
    job.signal = st.signal;
    job.ended_at = now_seconds();
    if (job.cancel_requested || st.cancelled) {
      job.state = JobState::kCancelled;
      job.reason = "cancelled";
    } else if (st.exit_code && *st.exit_code == 0) {
      job.state = JobState::kSucceeded;
    } else {
      job.state = JobState::kFailed;
      job.reason =
          st.signal ? fmt::format("killed by signal {} ({})", *st.signal, ::strsignal(*st.signal))
                    : fmt::format("exited with code {}", st.exit_code.value_or(-1));
    }
    release(job.id);
    (void)store_.update_job(job);
  }

  asio::io_context& ioc_;
  store::Store& store_;
  const Config& cfg_;
  Options opts_;
  Inventory inv_;
  std::map<std::int64_t, std::unique_ptr<asio::posix::stream_descriptor>> watches_;
  std::map<std::int64_t, std::shared_ptr<asio::steady_timer>> timers_;
};

LocalExecutor::LocalExecutor(asio::io_context& ioc, store::Store& store, const Config& cfg,
                             Options opts)
    : impl_(std::make_unique<Impl>(ioc, store, cfg, std::move(opts))) {}
LocalExecutor::~LocalExecutor() = default;
void LocalExecutor::recover() { impl_->recover(); }
Result<bool> LocalExecutor::submit(std::int64_t id) { return impl_->submit(id); }
Result<store::JobRecord> LocalExecutor::cancel(std::int64_t id) { return impl_->cancel(id); }
Inventory LocalExecutor::inventory() const { return impl_->inventory(); }
WaitEstimate LocalExecutor::local_wait(const JobSpec& spec) const {
  return impl_->local_wait(spec);
}

}  // namespace hylab::exec::local
