// The Slurm executor (see executor.h).
#include "exec/slurm/executor.h"

#include <fmt/format.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <map>

#include "common/job_spec.h"
#include "common/units.h"
#include "exec/slurm/batch.h"
#include "exec/slurm/client.h"

namespace hylab::exec::slurm {

namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Slurm's local ISO time ("2026-11-29T10:45:52") as Unix seconds; nothing when absent.
std::optional<double> slurm_seconds(const std::string& iso) {
  if (iso.empty()) return std::nullopt;
  std::tm tm{};
  if (!strptime(iso.c_str(), "%Y-%m-%dT%H:%M:%S", &tm)) return std::nullopt;
  tm.tm_isdst = -1;
  return static_cast<double>(std::mktime(&tm));
}

}  // namespace

class SlurmExecutor::Impl {
 public:
  Impl(boost::asio::io_context& ioc, store::Store& store, const Config& cfg, Options opts)
      : timer_(ioc), store_(store), cfg_(cfg), opts_(std::move(opts)) {}

  const CloudTarget* target_named(const std::string& name) const {
    for (const auto& t : cfg_.clouds)
      if (t.name == name) return &t;
    return nullptr;
  }

  SlurmClient client(const CloudTarget& t) const {
    return SlurmClient(t, opts_.command_timeout_seconds);
  }

  void recover() {
    for (auto state : {store::JobState::kQueued, store::JobState::kRunning}) {
      auto jobs = store_.jobs_in_state(state);
      if (!jobs) continue;
      for (const auto& j : *jobs)
        if (!j.remote_id.empty()) watched_[j.id] = true;
    }
    // Cloud jobs recorded but not handed over (a stop in between, or no target until now).
    if (auto pending = store_.jobs_in_state(store::JobState::kPending)) {
      for (const auto& j : *pending)
        if (j.environment == "cloud") (void)submit(j.id);
    }
    schedule();
  }

  Result<bool> submit(std::int64_t id) {
    auto job = store_.get_job(id);
    if (!job) return job.error();
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
    const CloudTarget& target = cfg_.clouds.front();
    std::string dir = fmt::format("{}/{}", opts_.jobs_dir, id);
    std::error_code ec;
    std::filesystem::create_directories(dir + "/checkpoint", ec);
    if (ec) return fail(*job, fmt::format("{}: {}", dir, ec.message()));
    BatchOptions bo;
    bo.job_id = id;
    bo.spot = job->spot;
    bo.log_path = dir + "/output.log";
    bo.checkpoint_dir = dir + "/checkpoint";
    bo.workdir = job->workdir;
    bo.grace_seconds = opts_.grace_seconds;
    auto script = batch_script(*spec, target, bo);
    if (!script) return fail(*job, script.error().message);  // sensitive: refused here too
    auto remote = client(target).submit(*script);
    if (!remote) return fail(*job, remote.error().message);
    job->target = target.name;
    job->remote_id = *remote;
    job->job_dir = dir;
    job->state = store::JobState::kQueued;
    job->queued_at = now_seconds();
    job->reason = fmt::format("submitted to {} as Slurm job {}", target.name, *remote);
    auto u = store_.update_job(*job);
    if (!u) return u.error();
    watched_[id] = true;
    schedule();
    return true;
  }

  Result<bool> fail(store::JobRecord& job, const std::string& why) {
    job.state = store::JobState::kFailed;
    job.reason = why;
    job.ended_at = now_seconds();
    (void)store_.update_job(job);
    return true;  // recorded on the job: the submission itself went through
  }

  void poll() {
    for (auto it = watched_.begin(); it != watched_.end();) {
      if (follow(it->first)) {
        it = watched_.erase(it);
      } else {
        ++it;
      }
    }
  }

  // Updates one job from Slurm; true once it has ended (nothing more to follow).
  bool follow(std::int64_t id) {
    auto job = store_.get_job(id);
    if (!job || store::is_terminal(job->state)) return true;
    const CloudTarget* t = target_named(job->target);
    if (!t) {
      (void)fail(*job, "its cloud target " + job->target + " is no longer configured");
      return true;
    }
    auto q = client(*t).query(job->remote_id);
    if (!q) {
      job->reason = "cannot reach the cloud target: " + q.error().message;  // try again later
      (void)store_.update_job(*job);
      return false;
    }
    if (!*q) {  // Slurm forgot it (past MinJobAge) before we saw it end
      job->state = store::JobState::kLost;
      job->reason =
          fmt::format("Slurm no longer knows job {}; its end was not seen", job->remote_id);
      job->ended_at = now_seconds();
      (void)store_.update_job(*job);
      return true;
    }
    const SlurmJob& s = **q;
    job->restarts = s.restarts;
    if (auto st = slurm_seconds(s.start_time)) job->started_at = *st;
    if (s.state == "PENDING" || s.state == "REQUEUED" || s.state == "REQUEUE_HOLD") {
      job->state = store::JobState::kQueued;
      job->reason =
          s.reason.empty() ? "waiting in " + t->name : "waiting in " + t->name + ": " + s.reason;
    } else if (!s.ended()) {
      job->state = store::JobState::kRunning;
      job->reason = "";
    } else {
      job->state = s.state == "COMPLETED"   ? store::JobState::kSucceeded
                   : s.state == "CANCELLED" ? store::JobState::kCancelled
                                            : store::JobState::kFailed;
      job->exit_code = s.exit_code;
      job->signal = s.signal;
      job->ended_at = slurm_seconds(s.end_time).value_or(now_seconds());
      job->reason = s.state == "COMPLETED" || s.state == "CANCELLED" ? "" : "Slurm: " + s.state;
      job->cost_usd = cost(*job, *t);
    }
    (void)store_.update_job(*job);
    return store::is_terminal(job->state);
  }

  // Elapsed hours x the instance's price (spot price for spot jobs) x nodes.
  std::optional<double> cost(const store::JobRecord& job, const CloudTarget& t) const {
    const Instance* inst = t.instance.empty() ? nullptr : cfg_.catalog.find_instance(t.instance);
    if (!inst || !job.started_at || !job.ended_at) return std::nullopt;
    double hours = std::max(0.0, *job.ended_at - *job.started_at) / 3600;
    Diagnostics diag;
    auto spec = load_job_spec_text(job.spec, "job", cfg_.catalog, diag);
    int nodes = spec ? std::max(1, spec->num_nodes) : 1;
    return hours * nodes * (job.spot ? inst->spot_usd_per_hour : inst->usd_per_hour);
  }

  Result<store::JobRecord> cancel(std::int64_t id) {
    auto job = store_.get_job(id);
    if (!job) return job.error();
    if (store::is_terminal(job->state)) return *job;
    job->cancel_requested = true;
    if (const CloudTarget* t = target_named(job->target); t && !job->remote_id.empty()) {
      auto c = client(*t).cancel(job->remote_id);
      if (!c) return c.error();
      (void)store_.update_job(*job);
      follow(id);  // CANCELLED shows at once in scontrol
      return store_.get_job(id);
    }
    job->state = store::JobState::kCancelled;  // never reached the cluster
    job->ended_at = now_seconds();
    (void)store_.update_job(*job);
    return *job;
  }

  void schedule() {
    if (scheduled_ || watched_.empty()) return;
    scheduled_ = true;
    timer_.expires_after(from_seconds(opts_.poll_interval_seconds));
    timer_.async_wait([this](const boost::system::error_code& ec) {
      scheduled_ = false;
      if (ec) return;
      poll();
      schedule();
    });
  }

 private:
  boost::asio::steady_timer timer_;
  store::Store& store_;
  const Config& cfg_;
  Options opts_;
  std::map<std::int64_t, bool> watched_;
  bool scheduled_ = false;
};

SlurmExecutor::SlurmExecutor(boost::asio::io_context& ioc, store::Store& store, const Config& cfg,
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
