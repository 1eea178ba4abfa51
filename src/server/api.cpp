#include "server/api.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <ctime>
#include <variant>

#include "common/clock.h"
#include "common/job_spec.h"
#include "common/text.h"
#include "exec/spend.h"
#include "placement/burst.h"
#include "placement/engine.h"
#include "placement/json.h"
#include "storage/cache.h"

namespace hylab::server {

namespace json = boost::json;
using store::JobRecord;
using store::JobState;

std::string generate_token() {
  unsigned char raw[32];
  if (RAND_bytes(raw, sizeof raw) != 1)
    throw std::runtime_error("no random bytes for the API token");
  std::string out;
  for (unsigned char c : raw) out += fmt::format("{:02x}", c);
  return out;
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

namespace {

json::value time_json(std::optional<double> t) {
  if (!t) return nullptr;
  std::time_t secs = static_cast<std::time_t>(*t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  int ms = static_cast<int>((*t - static_cast<double>(secs)) * 1000);
  return json::value(fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900,
                                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms));
}

// Rows stored before strings were checked (or by an older hylab) may hold bytes that are
// not UTF-8. Boost.JSON serialises them raw, and every strict parser, Boost.JSON's own
// included, then refuses the whole document: one bad job name broke every listing. So
// each string and key leaves as valid UTF-8, its bad bytes written as \xNN.
void make_valid_utf8(json::value& v) {
  if (v.is_string()) {
    if (!valid_utf8(v.get_string())) v = escape_invalid_utf8(v.get_string());
  } else if (v.is_array()) {
    for (auto& x : v.get_array()) make_valid_utf8(x);
  } else if (v.is_object()) {
    auto& o = v.get_object();
    bool bad_key = false;
    for (auto& kv : o) {
      bad_key = bad_key || !valid_utf8(kv.key());
      make_valid_utf8(kv.value());
    }
    if (bad_key) {
      json::object fixed;
      for (auto& kv : o) fixed[escape_invalid_utf8(kv.key())] = std::move(kv.value());
      o = std::move(fixed);
    }
  }
}

HttpResponse json_response(int status, json::value v) {
  make_valid_utf8(v);
  HttpResponse r;
  r.status = status;
  r.body = json::serialize(v) + "\n";
  return r;
}

HttpResponse error(int status, std::string_view message, json::object extra = {}) {
  extra["error"] = message;
  return json_response(status, std::move(extra));
}

// A stored JSON column. It may hold bytes that are not UTF-8 (a decision naming a job
// stored before names were checked): read anyway, json_response escapes them on the way
// out, where a strict parse made the whole decision read back as null.
json::value parse_or_null(const std::string& s) {
  boost::system::error_code ec;
  json::parse_options lenient;
  lenient.allow_invalid_utf8 = true;
  json::value v = json::parse(s, ec, {}, lenient);
  return ec ? json::value(nullptr) : v;
}

json::object job_json(const JobRecord& j) {
  json::object o;
  o["id"] = j.id;
  o["name"] = j.name;
  o["state"] = std::string(store::to_string(j.state));
  o["environment"] = j.environment;
  o["rule"] = j.rule;
  o["spot"] = j.spot;
  o["priority"] = j.priority;
  o["reason"] = j.reason;
  o["gpus"] = parse_or_null(j.gpus);
  o["pid"] = j.pid ? json::value(*j.pid) : json::value(nullptr);
  o["exit_code"] = j.exit_code ? json::value(*j.exit_code) : json::value(nullptr);
  o["signal"] = j.signal ? json::value(*j.signal) : json::value(nullptr);
  o["cancel_requested"] = j.cancel_requested;
  o["created_at"] = time_json(j.created_at);
  o["queued_at"] = time_json(j.queued_at);
  o["started_at"] = time_json(j.started_at);
  o["ended_at"] = time_json(j.ended_at);
  o["workdir"] = j.workdir;
  o["output_dir"] = j.job_dir.empty() ? json::value(nullptr) : json::value(j.job_dir + "/outputs");
  o["decision"] = parse_or_null(j.decision);
  if (!j.target.empty()) {  // on a cloud target
    o["target"] = j.target;
    o["remote_id"] = j.remote_id;
    o["restarts"] = j.restarts;
    o["cost_usd"] = j.cost_usd ? json::value(*j.cost_usd) : json::value(nullptr);
  }
  if (j.outputs_bytes) {  // brought back from the cloud target
    o["outputs_bytes"] = *j.outputs_bytes;
    o["outputs_files"] = j.outputs_files.value_or(0);
  }
  if (!j.after.empty() || !j.pipeline.empty()) {
    json::array after;
    for (auto id : j.after) after.emplace_back(id);
    o["after"] = std::move(after);
    o["pipeline"] = j.pipeline.empty() ? json::value(nullptr) : json::value(j.pipeline);
  }
  return o;
}

std::optional<std::int64_t> parse_id(std::string_view s) {
  if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string_view::npos)
    return std::nullopt;
  return std::stoll(std::string(s));
}

json::array diagnostics_json(const Diagnostics& d) {
  json::array out;
  for (const auto& x : d.items()) {
    out.emplace_back(
        json::object{{"severity", x.severity == Diagnostic::Severity::kError ? "error" : "warning"},
                     {"line", x.line},
                     {"column", x.column},
                     {"key", x.key},
                     {"message", x.message},
                     {"text", x.str()}});
  }
  return out;
}

// Streams a log file from `offset`. Following, it ends once the job has ended and every
// byte is sent; otherwise at the end of what is written now.
class LogStream {
 public:
  LogStream(store::Store& store, std::int64_t id, std::string path, std::uint64_t offset,
            bool follow)
      : store_(store), id_(id), path_(std::move(path)), offset_(offset), done_(!follow) {}

  std::optional<std::string> next() {
    std::string chunk = read_more();
    if (!chunk.empty()) return chunk;
    if (done_) return std::nullopt;
    auto job = store_.get_job(id_);
    // A queued job gets its folder when it starts.
    if (job && path_.empty() && !job->job_dir.empty()) path_ = job->job_dir + "/output.log";
    if (!job || store::is_terminal(job->state)) {
      // One last read: the shim writes the log before it records the exit.
      done_ = true;
      chunk = read_more();
      return chunk.empty() ? std::nullopt : std::optional<std::string>(chunk);
    }
    return std::string();
  }

 private:
  std::string read_more() {
    int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return {};
    std::string out(64UL * 1024, '\0');
    ssize_t n = ::pread(fd, out.data(), out.size(), static_cast<off_t>(offset_));
    ::close(fd);
    if (n <= 0) return {};
    out.resize(static_cast<std::size_t>(n));
    offset_ += static_cast<std::uint64_t>(n);
    return out;
  }

  store::Store& store_;
  std::int64_t id_;
  std::string path_;
  std::uint64_t offset_;
  bool done_ = false;
};

}  // namespace

Api::Api(const Config& cfg, store::Store& store, exec::Executor& executor, std::string token)
    : cfg_(cfg),
      store_(store),
      executor_(executor),
      token_(std::move(token)),
      started_at_(now_seconds()) {}

HttpResponse Api::handle(const HttpRequest& req) {
  auto t0 = std::chrono::steady_clock::now();
  std::string label = "other";
  HttpResponse r = route(req, label);
  metrics_.observe_request(
      label, r.status,
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return r;
}

HttpResponse Api::route(const HttpRequest& req, std::string& label) {
  const std::string& p = req.path;
  if (p == "/healthz") {
    label = "/healthz";
    return json_response(200, json::object{{"status", "ok"}});
  }
  std::string auth = req.header("authorization");
  // The scheme name is case-insensitive (RFC 9110).
  std::string_view given =
      auth.size() > 7 && iequals(std::string_view(auth).substr(0, 7), "bearer ")
          ? std::string_view(auth).substr(7)
          : std::string_view();
  if (!constant_time_equal(given, token_)) {
    label = "unauthorized";
    // Says how to authenticate, not where the token lives: whoever asks without it may be
    // anyone who reaches the port, and the server's filesystem layout is none of theirs.
    HttpResponse r = error(
        401, auth.empty() ? "missing bearer token: send 'Authorization: Bearer TOKEN' with the "
                            "token hylab serve created at its first start (hylab clients on "
                            "its machine find it themselves, or take it from $HYLAB_TOKEN)"
                          : "wrong bearer token: send the token hylab serve created at its "
                            "first start (hylab clients on its machine find it themselves, or "
                            "take it from $HYLAB_TOKEN)");
    r.headers.emplace_back("WWW-Authenticate", "Bearer");
    return r;
  }
  auto method_not_allowed = [&](const char* allowed) {
    HttpResponse r =
        error(405, fmt::format("{} does not accept {}; use {}", p, req.method, allowed));
    r.headers.emplace_back("Allow", allowed);
    return r;
  };
  if (p == "/metrics") {
    label = "/metrics";
    return req.method == "GET" ? metrics() : method_not_allowed("GET");
  }
  if (p == "/v1/jobs") {
    label = "/v1/jobs";
    if (req.method == "POST") return submit(req);
    if (req.method == "GET") return list(req);
    return method_not_allowed("GET, POST");
  }
  if (p == "/v1/place") {
    label = "/v1/place";
    return req.method == "POST" ? place(req) : method_not_allowed("POST");
  }
  if (p == "/v1/inventory") {
    label = "/v1/inventory";
    return req.method == "GET" ? inventory() : method_not_allowed("GET");
  }
  if (p == "/v1/cost") {
    label = "/v1/cost";
    return req.method == "GET" ? cost(req) : method_not_allowed("GET");
  }
  if (p == "/v1/status") {
    label = "/v1/status";
    return req.method == "GET" ? status() : method_not_allowed("GET");
  }
  constexpr std::string_view kJobs = "/v1/jobs/";
  if (p.rfind(kJobs, 0) == 0) {
    std::string_view rest = std::string_view(p).substr(kJobs.size());
    auto slash = rest.find('/');
    auto id = parse_id(rest.substr(0, slash));
    std::string_view tail =
        slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
    if (!id) {
      label = "/v1/jobs/{id}";
      return error(
          404, fmt::format("'{}' is not a job id (ids are whole numbers)", rest.substr(0, slash)));
    }
    if (tail.empty()) {
      label = "/v1/jobs/{id}";
      return req.method == "GET" ? get(*id) : method_not_allowed("GET");
    }
    if (tail == "/logs") {
      label = "/v1/jobs/{id}/logs";
      return req.method == "GET" ? logs(*id, req) : method_not_allowed("GET");
    }
    if (tail == "/cancel") {
      label = "/v1/jobs/{id}/cancel";
      return req.method == "POST" ? cancel(*id) : method_not_allowed("POST");
    }
  }
  label = "not_found";
  return error(404, fmt::format("no such route: {} {}", req.method, p));
}

namespace {
struct Parsed {
  std::optional<PipelineSpec> pipeline;  // one job, or a chain of several documents
  Diagnostics diag;
  std::string file;
};

Parsed parse_spec(const HttpRequest& req, const Catalog& catalog) {
  Parsed p;
  auto f = req.query.find("file");
  p.file = f == req.query.end() || f->second.empty() ? "request body" : f->second;
  // The file name is stored with the job and starts every message about it.
  if (auto fault = find_text_fault(p.file, /*multiline=*/false)) {
    p.file = printable(p.file);
    p.diag.error("request", 0, 0, "file",
                 fmt::format("the ?file= parameter is not one line of text: {} at byte {}",
                             fault->message, fault->offset));
    return p;
  }
  if (req.body.empty()) {
    p.diag.error(p.file, 0, 0, "", "the request body is empty: send the job spec as YAML or JSON");
    return p;
  }
  // JSON is YAML, so one loader takes both.
  p.pipeline = load_pipeline_text(req.body, p.file, catalog, p.diag);
  return p;
}

HttpResponse spec_errors(const Parsed& p) {
  return error(400, fmt::format("the job spec has {} error(s)", p.diag.error_count()),
               json::object{{"diagnostics", diagnostics_json(p.diag)}});
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (true) {
    auto comma = s.find(',', pos);
    out.push_back(s.substr(pos, comma == std::string::npos ? comma : comma - pos));
    if (comma == std::string::npos) return out;
    pos = comma + 1;
  }
}

// What a submission asks beside its spec: ?priority=, ?base= for a relative workdir, and
// ?after=ID,ID for the jobs it waits for.
struct SubmitOptions {
  int priority = 0;
  std::string base;
  std::vector<std::int64_t> after;
};

std::variant<SubmitOptions, HttpResponse> submit_options(const HttpRequest& req,
                                                         store::Store& store) {
  SubmitOptions o;
  if (auto it = req.query.find("priority"); it != req.query.end()) {
    try {
      std::size_t used = 0;
      o.priority = std::stoi(it->second, &used);
      if (used != it->second.size() || o.priority < -1000 || o.priority > 1000)
        throw std::out_of_range("");
    } catch (...) {
      return error(400, fmt::format("priority must be a whole number from -1000 to 1000, got '{}'",
                                    it->second));
    }
  }
  if (auto it = req.query.find("base"); it != req.query.end()) {
    if (auto fault = find_text_fault(it->second, /*multiline=*/false)) {
      return error(400, fmt::format("the ?base= parameter is not one line of text: {} at byte {}",
                                    fault->message, fault->offset));
    }
    o.base = it->second;
  }
  if (auto it = req.query.find("after"); it != req.query.end() && !it->second.empty()) {
    for (const auto& part : split_commas(it->second)) {
      auto id = parse_id(part);
      if (!id)
        return error(400, fmt::format("after must be job ids such as 12,13, got '{}'", part));
      auto dep = store.get_job(*id);
      if (!dep) {
        return error(dep.error().code == Errc::kNotFound ? 404 : 500,
                     fmt::format("after: {}", dep.error().message));
      }
      if (store::is_terminal(dep->state) && dep->state != JobState::kSucceeded) {
        return error(409, fmt::format("after: job {} ({}) has {}: a job waiting for it would "
                                      "never start",
                                      *id, dep->name, store::to_string(dep->state)));
      }
      if (o.after.size() >= 64) return error(400, "after: at most 64 jobs");
      o.after.push_back(*id);
    }
  }
  return o;
}

// A relative workdir is relative to ?base= (where hylab run was called), as in SkyPilot.
std::variant<std::string, HttpResponse> workdir_of(const JobSpec& spec, const SubmitOptions& o) {
  if (!spec.workdir || spec.workdir->empty()) return std::string();
  const std::string& w = *spec.workdir;
  if (w[0] == '/') return w;
  if (o.base.empty() || o.base[0] != '/') {
    return error(400, fmt::format("workdir '{}' is relative: submit with ?base=/absolute/dir "
                                  "(hylab run does) or give an absolute path",
                                  w));
  }
  return o.base + "/" + w;
}

std::string cannot_place_reason(const placement::Decision& d) {
  for (const auto& r : d.reasons) {
    if (r.rfind("cannot place", 0) == 0) return d.name + ": " + r;
  }
  return d.name + ": cannot place";
}
}  // namespace

// POST /v1/place: the decision for one job, or {"pipeline", "decisions"} for a chain.
HttpResponse Api::place(const HttpRequest& req) {
  Parsed p = parse_spec(req, cfg_.catalog);
  if (!p.pipeline) return spec_errors(p);
  if (!p.pipeline->chain()) {
    json::object o = placement::decision_json(placement::decide(p.pipeline->jobs[0], cfg_));
    o["warnings"] = diagnostics_json(p.diag);
    return json_response(200, std::move(o));
  }
  json::array decisions;
  for (const auto& job : p.pipeline->jobs) {
    decisions.emplace_back(placement::decision_json(placement::decide(job, cfg_)));
  }
  return json_response(200, json::object{{"pipeline", p.pipeline->name},
                                         {"decisions", std::move(decisions)},
                                         {"warnings", diagnostics_json(p.diag)}});
}

// POST /v1/jobs: one job (201 with the job), or a pipeline (201 with {"pipeline", "jobs"}),
// each job placed on its own. All or nothing: a spec error, a job that cannot be placed or
// a bad parameter stores none of them.
HttpResponse Api::submit(const HttpRequest& req) {
  Parsed p = parse_spec(req, cfg_.catalog);
  if (!p.pipeline) return spec_errors(p);
  auto opts = submit_options(req, store_);
  if (auto* bad = std::get_if<HttpResponse>(&opts)) return std::move(*bad);
  const SubmitOptions& o = std::get<SubmitOptions>(opts);
  const PipelineSpec& pipe = *p.pipeline;

  std::vector<JobRecord> records;
  json::array decisions;
  for (std::size_t i = 0; i < pipe.jobs.size(); ++i) {
    const JobSpec& spec = pipe.jobs[i];
    auto workdir = workdir_of(spec, o);
    if (auto* bad = std::get_if<HttpResponse>(&workdir)) return std::move(*bad);
    bool waits = i > 0 || !o.after.empty();
    auto d = placement::decide(spec, cfg_);
    if (d.placeable && d.environment == placement::Environment::kLocal && !waits) {
      // Burst: a job that would queue on the lab longer than the policy allows runs in the
      // cloud now, unless the monthly cloud budget is spent. (A job that waits for others
      // cannot know its wait for the lab yet.)
      exec::WaitEstimate w = executor_.local_wait(spec);
      bool budget_left = !exec::budget_spent(store_, cfg_.policy, now_seconds());
      placement::burst(d, spec, {w.hours, w.known, w.detail}, budget_left, cfg_);
    }
    json::object decision = placement::decision_json(d);
    if (!d.placeable) {
      return error(422, cannot_place_reason(d), json::object{{"decision", decision}});
    }
    JobRecord job;
    job.name = spec.name;
    job.spec = pipe.texts[i];
    job.spec_file = p.file;
    job.state = JobState::kPending;
    job.environment = std::string(placement::to_string(d.environment));
    job.rule = d.rule;
    job.spot = d.spot;
    job.decision = json::serialize(decision);
    job.priority = o.priority;
    job.created_at = now_seconds();
    job.workdir = std::get<std::string>(workdir);
    if (pipe.chain()) job.pipeline = pipe.name;
    if (i == 0 && !o.after.empty()) {
      job.after = o.after;
      job.held = true;
    }
    records.push_back(std::move(job));
  }
  std::vector<std::int64_t> ids;
  if (records.size() == 1) {
    auto id = store_.insert_job(records[0]);
    if (!id) return error(500, id.error().message);
    ids.push_back(*id);
  } else {
    auto chain = store_.insert_chain(std::move(records), /*chained=*/!pipe.parallel);
    if (!chain) return error(500, chain.error().message);
    ids = std::move(*chain);
  }
  // The first job goes to its executor (a held one only says what it waits for); cloud jobs
  // go to the cloud target, and without one they wait, saying so.
  if (auto s = executor_.submit(ids.front()); !s) return error(500, s.error().message);
  for (std::size_t i = 1; i < ids.size(); ++i) {
    if (auto s = executor_.submit(ids[i]); !s) return error(500, s.error().message);
  }
  json::array jobs;
  for (auto id : ids) {
    auto stored = store_.get_job(id);
    if (!stored) return error(500, stored.error().message);
    jobs.emplace_back(job_json(*stored));
  }
  HttpResponse r;
  if (ids.size() == 1) {
    json::object one = std::move(jobs[0].as_object());
    one["warnings"] = diagnostics_json(p.diag);
    r = json_response(201, std::move(one));
  } else {
    r = json_response(201, json::object{{"pipeline", pipe.name},
                                        {"parallel", pipe.parallel},
                                        {"jobs", std::move(jobs)},
                                        {"warnings", diagnostics_json(p.diag)}});
  }
  r.headers.emplace_back("Location", fmt::format("/v1/jobs/{}", ids.front()));
  return r;
}

// GET /v1/cost?since=2026-11-01|7d: spend by day, environment and job since then (default:
// the start of this month), and the monthly cloud budget.
HttpResponse Api::cost(const HttpRequest& req) {
  double now = now_seconds();
  double since = exec::month_start(now);
  if (auto it = req.query.find("since"); it != req.query.end() && !it->second.empty()) {
    const std::string& v = it->second;
    std::tm tm{};
    const char* end = v.size() == 10 ? strptime(v.c_str(), "%Y-%m-%d", &tm) : nullptr;
    if (end && *end == 0) {
      tm.tm_isdst = -1;
      since = static_cast<double>(std::mktime(&tm));
    } else if (auto h = parse_duration_hours(v);
               h && v.find_first_not_of("0123456789.") != std::string::npos) {
      since = now - *h * 3600;
    } else {
      return error(400, fmt::format("since must be a date (2026-11-01) or a duration back from "
                                    "now (7d, 12h), got '{}'",
                                    v));
    }
  }
  auto jobs = store_.jobs_active_since(since);
  if (!jobs) return error(500, jobs.error().message);
  exec::SpendReport rep = exec::spend_report(*jobs, since, now);
  auto cents = [](double usd) { return std::round(usd * 10000) / 10000; };
  auto by_env = [&](const std::map<std::string, double>& m) {
    json::object o;
    for (const auto& [env, usd] : m) o[env] = cents(usd);
    return o;
  };
  json::array days, job_rows;
  for (const auto& d : rep.days) {
    double total = 0;
    for (const auto& [e, usd] : d.usd_by_environment) total += usd;
    days.emplace_back(json::object{
        {"day", d.day}, {"usd", cents(total)}, {"by_environment", by_env(d.usd_by_environment)}});
  }
  for (const auto& j : rep.jobs) {
    json::object o{{"id", j.id},       {"name", j.name},          {"environment", j.environment},
                   {"state", j.state}, {"hours", cents(j.hours)}, {"usd", cents(j.usd)}};
    if (!j.target.empty()) {
      o["target"] = j.target;
      o["spot"] = j.spot;
      o["restarts"] = j.restarts;
    }
    job_rows.emplace_back(std::move(o));
  }
  json::object budget{{"month_cloud_usd", cents(exec::month_cloud_spend(store_, now))}};
  budget["monthly_cloud_budget_usd"] = cfg_.policy.monthly_cloud_budget_usd > 0
                                           ? json::value(cfg_.policy.monthly_cloud_budget_usd)
                                           : json::value(nullptr);
  return json_response(200, json::object{{"since", time_json(since)},
                                         {"until", time_json(now)},
                                         {"total_usd", cents(rep.total_usd)},
                                         {"by_environment", by_env(rep.usd_by_environment)},
                                         {"days", std::move(days)},
                                         {"jobs", std::move(job_rows)},
                                         {"budget", std::move(budget)}});
}

HttpResponse Api::list(const HttpRequest& req) {
  store::JobFilter f;
  if (auto it = req.query.find("state"); it != req.query.end()) {
    f.state = store::job_state_from(it->second);
    if (!f.state) {
      return error(
          400, fmt::format("unknown state '{}': use pending, queued, running, succeeded, failed, "
                           "cancelled or lost",
                           it->second));
    }
  }
  if (auto it = req.query.find("environment"); it != req.query.end()) {
    if (it->second != "local" && it->second != "cloud" && it->second != "hybrid") {
      return error(400,
                   fmt::format("unknown environment '{}': use local, cloud or hybrid", it->second));
    }
    f.environment = it->second;
  }
  if (auto it = req.query.find("after"); it != req.query.end()) {
    auto v = parse_id(it->second);
    if (!v) return error(400, fmt::format("after must be a job id, got '{}'", it->second));
    f.after_id = *v;
  }
  if (auto it = req.query.find("limit"); it != req.query.end()) {
    auto v = parse_id(it->second);
    if (!v || *v < 1 || *v > 1000)
      return error(400, fmt::format("limit must be from 1 to 1000, got '{}'", it->second));
    f.limit = static_cast<int>(*v);
  }
  // One extra row tells whether there is a next page.
  int want = f.limit;
  f.limit = want + 1;
  auto jobs = store_.list_jobs(f);
  if (!jobs) return error(500, jobs.error().message);
  json::array arr;
  bool more = static_cast<int>(jobs->size()) > want;
  if (more) jobs->pop_back();
  for (const auto& j : *jobs) {
    json::object o = job_json(j);
    o.erase("decision");
    arr.emplace_back(std::move(o));
  }
  json::object out;
  out["jobs"] = std::move(arr);
  out["next_after"] = more ? json::value(jobs->back().id) : json::value(nullptr);
  return json_response(200, std::move(out));
}

HttpResponse Api::get(std::int64_t id) {
  auto job = store_.get_job(id);
  if (!job) return error(job.error().code == Errc::kNotFound ? 404 : 500, job.error().message);
  return json_response(200, job_json(*job));
}

HttpResponse Api::logs(std::int64_t id, const HttpRequest& req) {
  auto job = store_.get_job(id);
  if (!job) return error(job.error().code == Errc::kNotFound ? 404 : 500, job.error().message);
  std::uint64_t offset = 0;
  if (auto it = req.query.find("offset"); it != req.query.end()) {
    auto v = parse_id(it->second);
    if (!v) return error(400, fmt::format("offset must be a byte count, got '{}'", it->second));
    offset = static_cast<std::uint64_t>(*v);
  }
  std::string path = job->job_dir.empty() ? std::string() : job->job_dir + "/output.log";
  bool follow = req.query.count("follow") && req.query.at("follow") != "0";
  HttpResponse r;
  r.content_type = "text/plain; charset=utf-8";
  // Streamed either way: a log may be as large as the cap, and is sent piece by piece.
  auto stream = std::make_shared<LogStream>(store_, id, path, offset, follow);
  r.stream = [stream] { return stream->next(); };
  return r;
}

HttpResponse Api::cancel(std::int64_t id) {
  auto job = executor_.cancel(id);
  if (!job) {
    int code = job.error().code == Errc::kNotFound       ? 404
               : job.error().code == Errc::kInvalidInput ? 409
                                                         : 500;
    return error(code, job.error().message);
  }
  return json_response(job->state == JobState::kRunning ? 202 : 200, job_json(*job));
}

HttpResponse Api::inventory() {
  exec::Inventory inv = executor_.inventory();
  json::array gpus;
  int used = 0;
  for (const auto& g : inv.gpus) {
    used += g.job != 0;
    gpus.emplace_back(json::object{{"index", g.index},
                                   {"uuid", g.uuid},
                                   {"model", g.model},
                                   {"memory_bytes", g.memory_bytes},
                                   {"job", g.job ? json::value(g.job) : json::value(nullptr)}});
  }
  return json_response(200, json::object{{"source", inv.source},
                                         {"detail", inv.detail},
                                         {"gpus", std::move(gpus)},
                                         {"free", static_cast<int>(inv.gpus.size()) - used},
                                         {"used", used}});
}

HttpResponse Api::status() {
  exec::Inventory inv = executor_.inventory();
  int used = 0;
  for (const auto& g : inv.gpus) used += g.job != 0;
  json::object jobs;
  if (auto counts = store_.count_by_state()) {
    for (const auto& c : *counts) {
      std::int64_t prev = jobs.contains(c.state) ? jobs.at(c.state).as_int64() : 0;
      jobs[c.state] = prev + c.count;
    }
  }
  return json_response(
      200,
      json::object{{"version", "0.1.0"},
                   {"url", url_},
                   {"pid", static_cast<std::int64_t>(::getpid())},
                   {"started_at", time_json(started_at_)},
                   {"state_dir", state_dir_of(cfg_.server)},
                   {"inventory", json::object{{"source", inv.source},
                                              {"detail", inv.detail},
                                              {"gpus", inv.gpus.size()},
                                              {"free", static_cast<int>(inv.gpus.size()) - used},
                                              {"used", used}}},
                   {"jobs", std::move(jobs)}});
}

HttpResponse Api::metrics() {
  if (auto counts = store_.count_by_state()) {
    std::vector<telemetry::JobCount> jc;
    for (const auto& c : *counts) jc.push_back({c.state, c.environment, c.count});
    metrics_.set_jobs(jc);
  }
  exec::Inventory inv = executor_.inventory();
  std::int64_t used = 0;
  for (const auto& g : inv.gpus) used += g.job != 0;
  metrics_.set_gpus(static_cast<std::int64_t>(inv.gpus.size()) - used, used, inv.source);
  double now = now_seconds();
  if (auto jobs = store_.jobs_active_since(exec::month_start(now))) {
    exec::SpendReport rep = exec::spend_report(*jobs, exec::month_start(now), now);
    telemetry::Spend sp;
    sp.month_by_environment = rep.usd_by_environment;
    sp.monthly_cloud_budget_usd = cfg_.policy.monthly_cloud_budget_usd;
    for (const auto& t : cfg_.clouds) sp.month_by_target[t.name] = 0;
    for (const auto& j : rep.jobs) {
      if (j.target.empty()) continue;
      sp.month_by_target[j.target] += j.usd;
      sp.preemptions_by_target[j.target] += j.restarts;
    }
    metrics_.set_spend(sp);
  }
  HttpResponse r;
  r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  r.body = metrics_.render();
  // The storage cache's figures, as `hylab data` last left them: one view of the lab.
  if (auto s = storage::saved_cache_stats(storage::default_cache_dir(cfg_.storage.cache_dir))) {
    r.body += telemetry::storage_metrics_text({s->bytes, s->max_bytes, s->entries, s->hits,
                                               s->revalidated, s->misses, s->evictions,
                                               s->refused_uploads});
  }
  return r;
}

}  // namespace hylab::server
