// The router and its pipelines (see router.h).
#include "exec/router.h"

#include <fmt/format.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "common/clock.h"
#include "common/text.h"

namespace hylab::exec {

using store::JobRecord;
using store::JobState;

namespace asio = boost::asio;

Router::Router(asio::io_context& ioc, store::Store& store, Executor& local, Executor& cloud)
    : ioc_(ioc), store_(store), local_(local), cloud_(cloud) {
  store_.on_ended([this, alive = alive_](const JobRecord&) {
    if (settle_posted_) return;
    settle_posted_ = true;
    asio::post(ioc_, [this, alive] {
      if (!*alive) return;
      settle_posted_ = false;
      settle();
    });
  });
}

Router::~Router() {
  *alive_ = false;
  store_.on_ended(nullptr);
}

void Router::recover() {
  local_.recover();
  cloud_.recover();
  settle();  // endings while the server was down
}

Result<bool> Router::submit(std::int64_t job_id) {
  auto job = store_.get_job(job_id);
  if (!job) return job.error();
  if (job->held) {
    settle_one(*job);
    return true;
  }
  return of(*job).submit(job_id);
}

Result<JobRecord> Router::cancel(std::int64_t job_id) {
  auto job = store_.get_job(job_id);
  if (!job) return job.error();
  if (job->held && job->state == JobState::kPending) {  // no executor has it yet
    job->state = JobState::kCancelled;
    job->held = false;
    job->cancel_requested = true;
    job->ended_at = now_seconds();
    job->reason = "cancelled before it started (it was waiting for the jobs before it)";
    if (auto u = store_.update_job(*job); !u) return u.error();
    return *job;
  }
  return of(*job).cancel(job_id);
}

void Router::settle() {
  auto pending = store_.jobs_in_state(JobState::kPending);
  if (!pending) return;
  for (auto& job : *pending) {
    if (job.held) settle_one(job);
  }
}

void Router::settle_one(JobRecord& job) {
  std::vector<std::string> waiting;
  for (auto id : job.after) {
    auto dep = store_.get_job(id);
    if (!dep) {
      waiting.clear();
      job.reason = fmt::format("cancelled: job {} it waits for is gone", id);
      job.state = JobState::kCancelled;
      break;
    }
    if (dep->state == JobState::kSucceeded) continue;
    if (store::is_terminal(dep->state)) {
      job.state = JobState::kCancelled;
      job.reason = fmt::format("cancelled: job {} ({}) {}, so the jobs after it do not run", id,
                               dep->name, store::to_string(dep->state));
      break;
    }
    waiting.push_back(fmt::format("{} ({}, {})", id, dep->name, store::to_string(dep->state)));
  }
  if (job.state == JobState::kCancelled) {
    job.held = false;
    job.ended_at = now_seconds();
    (void)store_.update_job(job);  // its own ending settles the jobs after it in turn
    return;
  }
  if (!waiting.empty()) {
    std::string reason = "waits for job " + join(waiting, ", ") + " to succeed";
    if (reason != job.reason) {
      job.reason = reason;
      (void)store_.update_job(job);
    }
    return;
  }
  job.held = false;
  job.reason.clear();
  if (auto u = store_.update_job(job); !u) return;
  (void)of(job).submit(job.id);
}

}  // namespace hylab::exec
