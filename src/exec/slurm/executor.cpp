// The Slurm executor (see executor.h).
#include "exec/slurm/executor.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <map>
#include <set>

#include "common/clock.h"
#include "common/job_spec.h"
#include "common/units.h"
#include "exec/slurm/batch.h"
#include "exec/slurm/client.h"
#include "exec/spend.h"
#include "placement/burst.h"

namespace hylab::exec::slurm {

namespace asio = boost::asio;
using store::JobRecord;
using store::JobState;

namespace {

// Slurm's local ISO time ("2026-11-29T10:45:52") as Unix seconds; nothing when absent.
std::optional<double> slurm_seconds(const std::string& iso) {
  if (iso.empty()) return std::nullopt;
  std::tm tm{};
  if (!strptime(iso.c_str(), "%Y-%m-%dT%H:%M:%S", &tm)) return std::nullopt;
  tm.tm_isdst = -1;
  return static_cast<double>(std::mktime(&tm));
}

bool waiting_state(const std::string& s) {
  return s == "PENDING" || s == "REQUEUED" || s == "REQUEUE_HOLD" || s == "REQUEUE_FED";
}

// Bytes and files under a folder.
std::pair<std::int64_t, std::int64_t> tally(const std::string& dir) {
  std::int64_t bytes = 0, files = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file(ec)) {
      ++files;
      bytes += static_cast<std::int64_t>(it->file_size(ec));
    }
  }
  return {bytes, files};
}

struct Fetched {
  Result<std::vector<std::string>> missing = std::vector<std::string>{};
  std::int64_t bytes = 0, files = 0;
};

}  // namespace

class SlurmExecutor::Impl {
 public:
  Impl(asio::io_context& ioc, store::Store& store, const Config& cfg, Options opts)
      : ioc_(ioc), timer_(ioc), store_(store), cfg_(cfg), opts_(std::move(opts)) {}

  ~Impl() {
    *alive_ = false;  // completions still queued on the event loop do nothing
    timer_.cancel();
    pool_.join();  // commands in flight end within their deadline
  }

  const CloudTarget* target_named(const std::string& name) const {
    for (const auto& t : cfg_.clouds)
      if (t.name == name) return &t;
    return nullptr;
  }

  SlurmClient client(const CloudTarget& t) const {
    return SlurmClient(t, opts_.command_timeout_seconds);
  }

  // Runs `work` (a blocking cluster command) on the pool, then `done` with its result on
  // the event loop; nothing if the executor is gone by then.
  template <class Work, class Done>
  void offload(Work work, Done done) {
    asio::post(
        pool_, [this, alive = alive_, work = std::move(work), done = std::move(done)]() mutable {
          auto result = work();
          asio::post(ioc_, [alive, result = std::move(result), done = std::move(done)]() mutable {
            if (*alive) done(std::move(result));
          });
        });
  }

  void recover() {
    for (auto state : {JobState::kQueued, JobState::kRunning}) {
      auto jobs = store_.jobs_in_state(state);
      if (!jobs) continue;
      for (const auto& j : *jobs)
        if (!j.remote_id.empty()) watched_.insert(j.id);
    }
    // Cloud jobs recorded but not handed over (a stop in between, or no target until now).
    if (auto pending = store_.jobs_in_state(JobState::kPending)) {
      for (const auto& j : *pending)
        if (j.environment == "cloud" && !j.held) (void)submit(j.id);
    }
    schedule();
  }

  std::optional<JobSpec> spec_of(const JobRecord& job) const {
    Diagnostics diag;
    return load_job_spec_text(job.spec, job.spec_file.empty() ? "job" : job.spec_file, cfg_.catalog,
                              diag);
  }

  std::string mark(std::int64_t id) const {
    return opts_.instance.empty() ? "" : fmt::format("hylab-{}-{}", opts_.instance, id);
  }

  Result<bool> submit(std::int64_t id) {
    auto job = store_.get_job(id);
    if (!job) return job.error();
    if (job->state != JobState::kPending || submitting_.count(id)) return true;
    waiting_.erase(id);
    // Handed to a target before but its Slurm id never recorded (a stop while sbatch ran):
    // look for it by hylab's mark before submitting again.
    if (const CloudTarget* t = target_named(job->target);
        t && job->remote_id.empty() && !mark(id).empty() && !looked_up_.count(id)) {
      submitting_.insert(id);
      offload([c = client(*t)]() mutable { return c.query_all(); },
              [this, id, name = t->name, want = mark(id)](Result<std::vector<SlurmJob>> all) {
                submitting_.erase(id);
                looked_up_.insert(id);
                if (all) {
                  for (const auto& s : *all) {
                    if (s.comment != want) continue;
                    submitted(id, name, "found by its mark after a restart", s.id);
                    return;
                  }
                }
                (void)submit(id);  // not there (or the target did not answer): submit it
              });
      return true;
    }
    if (cfg_.clouds.empty()) {
      job->reason =
          "placed in the cloud; no cloud target is configured (clouds: in hylab.yaml), so it waits";
      (void)store_.update_job(*job);
      return true;
    }
    Diagnostics diag;
    auto spec = load_job_spec_text(job->spec, job->spec_file.empty() ? "job" : job->spec_file,
                                   cfg_.catalog, diag);
    if (!spec) return fail(*job, "the job spec no longer loads: " + diag.str());
    if (auto spent = budget_spent(store_, cfg_.policy, now_seconds());
        spent && !spec->sensitive()) {
      job->reason = fmt::format(
          "waits: the monthly cloud budget (${:.2f}, policy.monthly_cloud_budget_usd) is spent "
          "(${:.2f} this month); it goes to the cloud next month or with a larger budget",
          cfg_.policy.monthly_cloud_budget_usd, *spent);
      (void)store_.update_job(*job);
      waiting_.insert(id);
      schedule();
      return true;
    }
    placement::TargetChoice choice = placement::choose_target(*spec, job->spot, cfg_);
    if (!choice.target) {
      job->reason = "placed in the cloud; " + choice.why + ", so it waits";
      (void)store_.update_job(*job);
      return true;
    }
    const CloudTarget& target = *choice.target;
    std::string dir = fmt::format("{}/{}", opts_.jobs_dir, id);
    std::error_code ec;
    std::filesystem::create_directories(dir + "/checkpoint", ec);
    std::filesystem::create_directories(dir + "/outputs", ec);
    if (ec) return fail(*job, fmt::format("{}: {}", dir, ec.message()));
    BatchOptions bo;
    bo.job_id = id;
    bo.spot = job->spot;
    bo.log_path = dir + "/output.log";
    bo.checkpoint_dir = dir + "/checkpoint";
    bo.output_dir = dir + "/outputs";
    bo.workdir = job->workdir.empty() ? dir : job->workdir;
    bo.grace_seconds = opts_.grace_seconds;
    bo.comment = mark(id);
    auto script = batch_script(*spec, target, bo);
    if (!script) return fail(*job, script.error().message);  // sensitive: refused here too
    job->target = target.name;
    job->job_dir = dir;
    job->reason = fmt::format("submitting to {}, {}", target.name, choice.why);
    if (auto u = store_.update_job(*job); !u) return u.error();
    submitting_.insert(id);
    fast_polls();
    offload([c = client(target), s = *script]() mutable { return c.submit(s); },
            [this, id, name = target.name, why = choice.why](Result<std::string> remote) {
              submitting_.erase(id);
              submitted(id, name, why, std::move(remote));
            });
    return true;
  }

  void submitted(std::int64_t id, const std::string& target, const std::string& why,
                 Result<std::string> remote) {
    auto job = store_.get_job(id);
    if (!job) return;
    if (!remote && remote.error().code == Errc::kUnavailable && !job->cancel_requested) {
      // The controller did not answer: sbatch may still have taken the job, so the next try
      // looks for it by its mark first.
      job->reason = remote.error().message + "; trying again";
      (void)store_.update_job(*job);
      looked_up_.erase(id);
      waiting_.insert(id);
      schedule();
      return;
    }
    if (!remote) {
      (void)fail(*job, remote.error().message);
      return;
    }
    job->remote_id = *remote;
    job->state = JobState::kQueued;
    job->queued_at = now_seconds();
    job->reason = fmt::format("submitted to {} as Slurm job {}: {}", target, *remote, why);
    (void)store_.update_job(*job);
    watched_.insert(id);
    if (job->cancel_requested) (void)cancel(id);  // asked for while sbatch ran
    schedule();
  }

  Result<bool> fail(JobRecord& job, const std::string& why) {
    job.state = JobState::kFailed;
    job.reason = why;
    job.ended_at = now_seconds();
    (void)store_.update_job(job);
    return true;  // recorded on the job: the submission itself went through
  }

  // One round: budget-held jobs try again, and one `scontrol show job` per target tells
  // the state of every job followed there.
  void poll() {
    for (std::int64_t id : std::set<std::int64_t>(waiting_)) (void)submit(id);
    std::map<std::string, std::vector<std::int64_t>> by_target;
    for (auto it = watched_.begin(); it != watched_.end();) {
      auto job = store_.get_job(*it);
      if (!job || store::is_terminal(job->state)) {
        cancel_sent_.erase(*it);
        it = watched_.erase(it);
        continue;
      }
      if (!busy_.count(*it)) {
        if (!target_named(job->target)) {
          (void)fail(*job, "its cloud target " + job->target + " is no longer configured");
          cancel_sent_.erase(*it);
          it = watched_.erase(it);
          continue;
        }
        by_target[job->target].push_back(*it);
      }
      ++it;
    }
    for (auto& [name, ids] : by_target) {
      std::vector<std::string> remote;
      for (auto id : ids) {
        busy_.insert(id);
        if (auto j = store_.get_job(id)) remote.push_back(j->remote_id);
      }
      // squeue --json for the jobs still active; scontrol (which also knows the ended ones,
      // with their exit codes) only when one of ours is not among them.
      offload(
          [c = client(*target_named(name)), remote]() mutable -> Result<std::vector<SlurmJob>> {
            auto active = c.query_active();
            if (!active) return c.query_all();  // a Slurm whose squeue has no --json
            for (const auto& rid : remote) {
              auto it = std::find_if(active->begin(), active->end(),
                                     [&](const SlurmJob& s) { return s.id == rid; });
              if (it == active->end() || it->ended()) return c.query_all();
            }
            return active;
          },
          [this, ids = ids](Result<std::vector<SlurmJob>> all) {
            for (auto id : ids) busy_.erase(id);
            for (auto id : ids) apply(id, all);
          });
    }
  }

  // Updates one job from what Slurm said.
  void apply(std::int64_t id, const Result<std::vector<SlurmJob>>& all) {
    auto job = store_.get_job(id);
    if (!job || store::is_terminal(job->state)) {
      unwatch(id);
      return;
    }
    const CloudTarget* t = target_named(job->target);
    if (!t) return;
    if (!all) {
      job->reason = "cannot reach the cloud target: " + all.error().message;  // next round
      (void)store_.update_job(*job);
      return;
    }
    const SlurmJob* found = nullptr;
    for (const auto& s : *all)
      if (s.id == job->remote_id) found = &s;
    if (!found) {  // Slurm forgot it (past MinJobAge) before we saw it end
      job->state = JobState::kLost;
      job->reason =
          fmt::format("Slurm no longer knows job {}; its end was not seen", job->remote_id);
      job->ended_at = now_seconds();
      (void)store_.update_job(*job);
      unwatch(id);
      return;
    }
    const SlurmJob& s = *found;
    if (job->cancel_requested && !s.ended() && s.state != "COMPLETING")
      send_cancel(id, *t, job->remote_id);  // (a no-op once one went through)
    auto spec = spec_of(*job);
    int nodes = spec ? std::max(1, spec->num_nodes) : 1;
    job->restarts = s.restarts;
    if (waiting_state(s.state)) {
      job->state = JobState::kQueued;
      job->reason =
          s.reason.empty() ? "waiting in " + t->name : "waiting in " + t->name + ": " + s.reason;
      if (s.restarts > 0) job->reason += fmt::format(" (preempted {} times)", s.restarts);
      (void)store_.update_job(*job);
      maybe_fall_back(*job, s, *t);
      return;
    }
    // Running or ended: the spend of this run, on top of the runs before a preemption.
    auto start = slurm_seconds(s.start_time);
    if (start) {
      if (!job->started_at) job->started_at = start;
      if (job->segment_start && *job->segment_start != *start)
        job->cost_prior_usd = job->cost_usd.value_or(job->cost_prior_usd);
      job->segment_start = start;
      double until = s.ended() ? slurm_seconds(s.end_time).value_or(now_seconds()) : now_seconds();
      job->cost_usd = job->cost_prior_usd +
                      price(*t, s.partition) * nodes * std::max(0.0, until - *start) / 3600;
    }
    if (!s.ended()) {
      job->state = JobState::kRunning;
      job->reason = s.restarts > 0 ? fmt::format("running again after {} preemption(s), in {}",
                                                 s.restarts, s.partition)
                                   : "";
      (void)store_.update_job(*job);
      return;
    }
    // Ended: bring the outputs back, then record the end (the job shows running until then).
    job->reason = "ended in Slurm (" + s.state + "); bringing back its outputs";
    (void)store_.update_job(*job);
    busy_.insert(id);
    std::vector<std::string> outputs = spec ? spec->outputs : std::vector<std::string>{};
    std::string from = job->workdir.empty() ? job->job_dir : job->workdir;
    std::string to = job->job_dir + "/outputs";
    offload(
        [c = client(*t), outputs, from, to, timeout = opts_.fetch_timeout_seconds]() mutable {
          Fetched f;
          if (!outputs.empty()) f.missing = c.fetch(from, outputs, to, timeout);
          std::tie(f.bytes, f.files) = tally(to);
          return f;
        },
        [this, id, s](Fetched f) {
          busy_.erase(id);
          finish(id, s, f);
        });
  }

  void finish(std::int64_t id, const SlurmJob& s, const Fetched& f) {
    auto job = store_.get_job(id);
    if (!job) return;
    job->state = s.state == "COMPLETED"   ? JobState::kSucceeded
                 : s.state == "CANCELLED" ? JobState::kCancelled
                                          : JobState::kFailed;
    job->exit_code = s.exit_code;
    job->signal = s.signal;
    job->ended_at = slurm_seconds(s.end_time).value_or(now_seconds());
    job->reason = s.state == "COMPLETED" || s.state == "CANCELLED" ? "" : "Slurm: " + s.state;
    job->outputs_bytes = f.bytes;
    job->outputs_files = f.files;
    auto note = [&](const std::string& n) { job->reason += (job->reason.empty() ? "" : "; ") + n; };
    if (!f.missing) {
      note("its outputs did not come back: " + f.missing.error().message);
    } else if (!f.missing->empty()) {
      std::string list;
      for (const auto& m : *f.missing) list += (list.empty() ? "" : ", ") + m;
      note("outputs not found: " + list);
    }
    if (!job->cost_usd && job->started_at) job->cost_usd = job->cost_prior_usd;
    (void)store_.update_job(*job);
    unwatch(id);
  }

  // The price of a node per hour in a partition: the spot price on the spot partition.
  double price(const CloudTarget& t, const std::string& partition) const {
    const Instance* inst = t.instance.empty() ? nullptr : cfg_.catalog.find_instance(t.instance);
    if (!inst) return 0;
    bool spot = !t.spot_partition.empty() && partition == t.spot_partition;
    return spot ? inst->spot_usd_per_hour : inst->usd_per_hour;
  }

  // A spot job preempted more often than the policy allows goes on-demand: while it waits
  // to run again it moves to the target's on-demand partition (Slurm moves only pending
  // jobs; one that restarted before this saw it moves at its next preemption).
  void maybe_fall_back(const JobRecord& job, const SlurmJob& s, const CloudTarget& t) {
    int max = cfg_.policy.max_preemptions;
    if (!job.spot || s.restarts <= max || t.spot_partition.empty() ||
        t.spot_partition == t.partition || s.partition != t.spot_partition)
      return;
    std::int64_t id = job.id;
    busy_.insert(id);
    offload([c = client(t), rid = job.remote_id,
             to = t.partition]() mutable { return c.move_to_partition(rid, to); },
            [this, id, restarts = s.restarts, max, to = t.partition](Result<bool> moved) {
              busy_.erase(id);
              auto j = store_.get_job(id);
              if (!j) return;
              if (moved) {
                j->spot = false;
                j->reason = fmt::format(
                    "preempted {} times, more than the policy's max_preemptions ({}): moved to "
                    "the on-demand partition {}",
                    restarts, max, to);
              } else {
                j->reason += "; could not move it on-demand: " + moved.error().message;
              }
              (void)store_.update_job(*j);
            });
  }

  Result<JobRecord> cancel(std::int64_t id) {
    auto job = store_.get_job(id);
    if (!job) return job.error();
    if (store::is_terminal(job->state)) return *job;
    job->cancel_requested = true;
    const CloudTarget* t = target_named(job->target);
    if (t && !job->remote_id.empty()) {
      (void)store_.update_job(*job);
      send_cancel(id, *t, job->remote_id);
      return *job;
    }
    if (submitting_.count(id)) {  // sbatch is running: cancelled once it answers
      (void)store_.update_job(*job);
      return *job;
    }
    waiting_.erase(id);
    job->state = JobState::kCancelled;  // never reached the cluster
    job->ended_at = now_seconds();
    (void)store_.update_job(*job);
    return *job;
  }

  // No longer followed (it ended, or Slurm forgot it).
  void unwatch(std::int64_t id) {
    watched_.erase(id);
    cancel_sent_.erase(id);
  }

  // scancel for a job the user cancelled. One that fails (a controller that did not answer
  // in time) is sent again by the next poll that still finds the job active: a cancel is
  // never left undone while the job runs on.
  void send_cancel(std::int64_t id, const CloudTarget& t, const std::string& rid) {
    if (cancel_sent_.count(id) || !cancelling_.insert(id).second) return;
    offload([c = client(t), rid]() mutable { return c.cancel(rid); },
            [this, id](Result<bool> r) {
              cancelling_.erase(id);
              if (r) {
                cancel_sent_.insert(id);
              } else if (auto j = store_.get_job(id)) {
                j->reason = "scancel failed (sent again at the next poll): " + r.error().message;
                (void)store_.update_job(*j);
              }
              fast_polls();  // CANCELLED shows at once in scontrol
              poll();
            });
  }

  // Right after a submission or a cancel, look more often for a while: a job that starts
  // at once shows running within a tenth of a second, not a poll interval later.
  void fast_polls() {
    fast_until_ = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    if (scheduled_ && next_poll_ - std::chrono::steady_clock::now() > kFast) {
      timer_.cancel();  // its handler reschedules sooner
    }
  }

  void schedule() {
    if (scheduled_ || (watched_.empty() && waiting_.empty() && submitting_.empty())) return;
    scheduled_ = true;
    auto interval = from_seconds(opts_.poll_interval_seconds);
    if (std::chrono::steady_clock::now() < fast_until_) interval = std::min(interval, kFast);
    next_poll_ = std::chrono::steady_clock::now() + interval;
    timer_.expires_at(next_poll_);
    timer_.async_wait([this, alive = alive_](const boost::system::error_code& ec) {
      if (!*alive) return;
      scheduled_ = false;
      if (!ec) poll();
      schedule();
    });
  }

 private:
  static constexpr std::chrono::steady_clock::duration kFast = std::chrono::milliseconds(100);
  asio::io_context& ioc_;
  asio::steady_timer timer_;
  store::Store& store_;
  const Config& cfg_;
  Options opts_;
  asio::thread_pool pool_{2};
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::set<std::int64_t> watched_;      // handed to Slurm, followed until they end
  std::set<std::int64_t> busy_;         // a command about them is running
  std::set<std::int64_t> waiting_;      // pending: the budget, or a controller that did not answer
  std::set<std::int64_t> submitting_;   // sbatch running
  std::set<std::int64_t> looked_up_;    // searched for by mark since this start
  std::set<std::int64_t> cancelling_;   // scancel running
  std::set<std::int64_t> cancel_sent_;  // scancel went through (not sent again)
  bool scheduled_ = false;
  std::chrono::steady_clock::time_point fast_until_{}, next_poll_{};
};

SlurmExecutor::SlurmExecutor(asio::io_context& ioc, store::Store& store, const Config& cfg,
                             Options opts)
    : impl_(std::make_unique<Impl>(ioc, store, cfg, std::move(opts))) {}
SlurmExecutor::~SlurmExecutor() = default;
void SlurmExecutor::recover() { impl_->recover(); }
Result<bool> SlurmExecutor::submit(std::int64_t job_id) { return impl_->submit(job_id); }
Result<store::JobRecord> SlurmExecutor::cancel(std::int64_t job_id) {
  return impl_->cancel(job_id);
}
Inventory SlurmExecutor::inventory() const { return Inventory{"slurm", "cloud targets", {}}; }
void SlurmExecutor::poll() { impl_->poll(); }

}  // namespace hylab::exec::slurm
