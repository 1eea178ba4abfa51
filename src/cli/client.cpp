#include "cli/client.h"

#include <fmt/format.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <climits>
#include <cstdlib>
#include <filesystem>

#include "cli/app.h"
#include "cli/output.h"
#include "common/http_client.h"
#include "common/job_spec.h"
#include "common/text.h"
#include "server/serve.h"

namespace hylab::cli {

namespace json = boost::json;

namespace {

struct Target {
  std::string url;
  std::string token;
  std::string token_source;
};

std::string url_encode(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

Result<Target> find_server(const Config& cfg, const ClientOptions& c) {
  Target t;
  std::string dir = state_dir_of(cfg.server);
  if (c.url) {
    t.url = *c.url;
  } else if (const char* u = std::getenv("HYLAB_URL"); u && *u) {
    t.url = u;
  } else if (auto info = read_text_file(server::server_info_path(dir), 4096)) {
    boost::system::error_code ec;
    json::value v = json::parse(*info, ec);
    if (!ec && v.is_object() && v.as_object().contains("url") && v.at("url").is_string()) {
      t.url = std::string(v.at("url").as_string());
    }
  }
  if (t.url.empty()) {
    std::string scheme = cfg.server.tls_cert.empty() ? "http" : "https";
    t.url = scheme + "://" + cfg.server.listen;
  }
  while (!t.url.empty() && t.url.back() == '/') t.url.pop_back();
  if (const char* tok = std::getenv("HYLAB_TOKEN"); tok && *tok) {
    t.token = tok;
    t.token_source = "$HYLAB_TOKEN";
  } else {
    auto file = read_text_file(server::token_path(dir), 4096);
    if (!file) {
      return Error{
          Errc::kNotFound,
          fmt::format(
              "no API token: {} does not exist (hylab serve creates it at its first start; or set "
              "$HYLAB_TOKEN)",
              server::token_path(dir))};
    }
    t.token = *file;
    while (!t.token.empty() && (t.token.back() == '\n' || t.token.back() == '\r'))
      t.token.pop_back();
    t.token_source = server::token_path(dir);
  }
  return t;
}

std::optional<Target> server_or_report(const Config& cfg, const ClientOptions& c,
                                       std::ostream& err) {
  auto t = find_server(cfg, c);
  if (!t) {
    err << "error: " << t.error().message << "\n";
    return std::nullopt;
  }
  return *t;
}

std::string not_running(const std::string& url) {
  return fmt::format(
      "error: hylab serve is not running at {}: start it with 'hylab serve --config hylab.yaml' "
      "(or 'make run')\n",
      url);
}

// An API response body. Lenient about bytes that are not UTF-8: a server before 0.2
// sent stored job names as they were, and one bad name must not make every listing fail.
// The output functions escape what this lets through. Throws on anything not JSON.
json::value parse_body(std::string_view body) {
  json::parse_options lenient;
  lenient.allow_invalid_utf8 = true;
  return json::parse(body, {}, lenient);
}

// One API call. Prints the reason and returns nothing on failure; *code gets the exit code.
std::optional<HttpClientResponse> call(const Target& t, const std::string& method,
                                       const std::string& path, const std::string& body,
                                       std::ostream& err, int* code,
                                       const std::string& content_type = "application/yaml") {
  HttpClientRequest req;
  req.method = method;
  req.url = t.url + path;
  req.headers.emplace_back("Authorization", "Bearer " + t.token);
  if (!body.empty()) req.headers.emplace_back("Content-Type", content_type);
  req.body = body;
  auto r = http_request(req);
  if (!r) {
    err << (r.error().code == Errc::kNotFound ? not_running(t.url)
                                              : "error: " + r.error().message + "\n");
    *code = kExitFailure;
    return std::nullopt;
  }
  return std::move(*r);
}

// The API's error body: {"error": "...", "diagnostics": [...]}.
int report_error(const HttpClientResponse& r, std::ostream& err) {
  boost::system::error_code ec;
  json::parse_options lenient;
  lenient.allow_invalid_utf8 = true;
  json::value v = json::parse(r.body, ec, {}, lenient);
  // Messages quote what the user sent, which may be the very bytes that were refused.
  if (!ec && v.is_object()) {
    const auto& o = v.as_object();
    if (auto* d = o.if_contains("diagnostics"); d && d->is_array()) {
      for (const auto& x : d->as_array()) err << printable(x.at("text").as_string()) << "\n";
    }
    if (auto* e = o.if_contains("error"); e && e->is_string())
      err << "error: " << printable(e->as_string()) << "\n";
  } else {
    err << fmt::format("error: HTTP {}: {}\n", r.status, printable(r.body.substr(0, 200)));
  }
  if (r.status == 401) err << "(the token is read from $HYLAB_TOKEN or STATE_DIR/token)\n";
  if (r.status == 400) return kExitBadInput;
  if (r.status == 422) return kExitCannotPlace;
  return kExitFailure;
}

// GET of a JSON resource; nothing (with *code set and the error printed) when it failed.
std::optional<json::value> get_json(const Target& t, const std::string& path, std::ostream& err,
                                    int* code) {
  auto r = call(t, "GET", path, "", err, code);
  if (!r) return std::nullopt;
  if (r->status != 200) {
    *code = report_error(*r, err);
    return std::nullopt;
  }
  return parse_body(r->body);
}

// A value as one line of text for a person: a string stored by an older hylab may hold
// terminal escapes, which are shown (\x1b), never obeyed.
std::string str(const json::value& v) {
  if (v.is_string()) return printable(v.as_string());
  if (v.is_null()) return "-";
  return json::serialize(v);
}

std::string ago(const json::value& t) {
  return t.is_string() ? std::string(t.as_string()).substr(0, 19) : "-";
}

std::string job_line_state(const json::object& j) {
  std::string s = str(j.at("state"));
  if (!j.at("exit_code").is_null() && s != "succeeded")
    s += fmt::format(" ({})", str(j.at("exit_code")));
  if (!j.at("signal").is_null()) s += fmt::format(" (signal {})", str(j.at("signal")));
  return s;
}

int follow_logs(const Target& t, std::int64_t id, std::ostream& out, std::ostream& err) {
  HttpClientRequest req;
  req.url = fmt::format("{}/v1/jobs/{}/logs?follow=1", t.url, id);
  req.headers.emplace_back("Authorization", "Bearer " + t.token);
  req.timeout_seconds = 3600;  // between pieces: a quiet job may print nothing for long
  auto r = http_stream(req, [&](std::string_view data) {
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
    out.flush();
    return static_cast<bool>(out);
  });
  if (!r) {
    err << (r.error().code == Errc::kNotFound ? not_running(t.url)
                                              : "error: " + r.error().message + "\n");
    return kExitFailure;
  }
  if (r->status != 200) return report_error(*r, err);
  return kExitOk;
}

}  // namespace

int cmd_run(const Config& cfg, const ClientOptions& c, const RunOptions& o, std::ostream& out,
            std::ostream& err) {
  auto t = server_or_report(cfg, c, err);
  if (!t) return kExitFailure;
  auto spec = read_text_file(o.file, kMaxJobSpecBytes);
  if (!spec) {
    err << "error: " << spec.error().message << "\n";
    return kExitBadInput;
  }
  // A relative workdir is relative to where the command runs, as in SkyPilot.
  std::error_code ec;
  std::string base = std::filesystem::current_path(ec).string();
  int code = kExitOk;
  auto r = call(*t, "POST",
                fmt::format("/v1/jobs?file={}&priority={}&base={}", url_encode(o.file), o.priority,
                            url_encode(base)),
                *spec, err, &code);
  if (!r) return code;
  if (r->status != 201) return report_error(*r, err);
  json::value v = parse_body(r->body);
  const auto& top = v.as_object();
  for (const auto& w : top.at("warnings").as_array())
    err << printable(w.at("text").as_string()) << "\n";
  if (c.json && !o.follow) {
    out << pretty_json(v);
    return kExitOk;
  }
  // One job, or a pipeline: a line per job, in order.
  std::vector<const json::object*> jobs;
  if (top.contains("jobs")) {
    bool parallel = top.contains("parallel") && top.at("parallel").as_bool();
    err << fmt::format("pipeline {}: {} jobs, {}\n", str(top.at("pipeline")),
                       top.at("jobs").as_array().size(),
                       parallel ? "started together (a job group)"
                                : "each starting when the one before has succeeded");
    for (const auto& j : top.at("jobs").as_array()) jobs.push_back(&j.as_object());
  } else {
    jobs.push_back(&top);
  }
  for (const auto* jp : jobs) {
    const auto& j = *jp;
    const auto& reasons = j.at("decision").at("reasons").as_array();
    std::string why = reasons.empty() ? "" : std::string(reasons.at(0).as_string());
    err << fmt::format("job {} ({}): {} by rule {}, {}{}\n", j.at("id").as_int64(),
                       str(j.at("name")), str(j.at("environment")), str(j.at("rule")),
                       job_line_state(j),
                       j.at("reason").as_string().empty() ? "" : ": " + str(j.at("reason")));
    if (!why.empty()) err << "  " << why << "\n";
    if (!o.follow) out << j.at("id").as_int64() << "\n";
  }
  if (!o.follow) return kExitOk;
  for (const auto* jp : jobs) {
    std::int64_t id = jp->at("id").as_int64();
    if (str(jp->at("environment")) == "cloud") {
      err << fmt::format("  (not following job {}: it waits for a cloud target)\n", id);
      return kExitOk;
    }
    int rc = follow_logs(*t, id, out, err);
    if (rc != kExitOk) return rc;
    auto fin = call(*t, "GET", fmt::format("/v1/jobs/{}", id), "", err, &code);
    if (!fin) return code;
    json::value fv = parse_body(fin->body);
    err << fmt::format("job {} {}\n", id, job_line_state(fv.as_object()));
    if (str(fv.at("state")) != "succeeded") return kExitFailure;
  }
  return kExitOk;
}

int cmd_jobs(const Config& cfg, const ClientOptions& c, const JobsOptions& o, std::ostream& out,
             std::ostream& err) {
  auto t = server_or_report(cfg, c, err);
  if (!t) return kExitFailure;
  std::string query = fmt::format("limit={}", std::min(o.limit, 1000));
  if (o.state) query += "&state=" + url_encode(*o.state);
  if (o.environment) query += "&environment=" + url_encode(*o.environment);
  json::array all;
  std::string after;
  int code = kExitOk;
  for (;;) {
    auto r = call(*t, "GET", fmt::format("/v1/jobs?{}{}", query, after), "", err, &code);
    if (!r) return code;
    if (r->status != 200) return report_error(*r, err);
    json::value v = parse_body(r->body);
    for (auto& j : v.at("jobs").as_array()) all.push_back(std::move(j));
    const auto& next = v.at("next_after");
    if (!o.all || next.is_null()) break;
    after = fmt::format("&after={}", next.as_int64());
  }
  if (c.json) {
    out << pretty_json(all);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows{
      {"ID", "NAME", "STATE", "ENV", "RULE", "AFTER", "GPUS", "CREATED", "REASON"}};
  for (const auto& jv : all) {
    const auto& j = jv.as_object();
    std::string gpus;
    if (j.at("gpus").is_array()) {
      for (const auto& g : j.at("gpus").as_array()) {
        if (!gpus.empty()) gpus += ',';
        gpus += str(g.at("index"));  // not "," + ...: gcc 12's false -Wrestrict
      }
    }
    // A pipeline's jobs read "pipeline/name", with the jobs each waits for.
    std::string name = str(j.at("name"));
    std::string waits;
    if (j.contains("pipeline") && j.at("pipeline").is_string())
      name = str(j.at("pipeline")) + "/" + name;
    if (j.contains("after")) {
      for (const auto& a : j.at("after").as_array()) waits += (waits.empty() ? "" : ",") + str(a);
    }
    rows.push_back({str(j.at("id")), name, job_line_state(j), str(j.at("environment")),
                    str(j.at("rule")), waits.empty() ? "-" : waits, gpus.empty() ? "-" : gpus,
                    ago(j.at("created_at")), str(j.at("reason"))});
  }
  out << columns(rows);
  return kExitOk;
}

namespace {
std::optional<std::int64_t> job_id(const std::string& s, std::ostream& err) {
  if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string::npos) {
    err << fmt::format("error: '{}' is not a job id (see 'hylab jobs')\n", s);
    return std::nullopt;
  }
  return std::stoll(s);
}
}  // namespace

int cmd_logs(const Config& cfg, const ClientOptions& c, const std::string& id_text, bool follow,
             std::ostream& out, std::ostream& err) {
  auto id = job_id(id_text, err);
  if (!id) return kExitBadInput;
  auto t = server_or_report(cfg, c, err);
  if (!t) return kExitFailure;
  if (follow) return follow_logs(*t, *id, out, err);
  int code = kExitOk;
  auto r = call(*t, "GET", fmt::format("/v1/jobs/{}/logs", *id), "", err, &code);
  if (!r) return code;
  if (r->status != 200) return report_error(*r, err);
  out << r->body;
  return kExitOk;
}

int cmd_cancel(const Config& cfg, const ClientOptions& c, const std::string& id_text,
               std::ostream& out, std::ostream& err) {
  auto id = job_id(id_text, err);
  if (!id) return kExitBadInput;
  auto t = server_or_report(cfg, c, err);
  if (!t) return kExitFailure;
  int code = kExitOk;
  auto r = call(*t, "POST", fmt::format("/v1/jobs/{}/cancel", *id), "", err, &code);
  if (!r) return code;
  if (r->status != 200 && r->status != 202) return report_error(*r, err);
  json::value v = parse_body(r->body);
  if (c.json) {
    out << pretty_json(v);
  } else if (r->status == 202) {
    out << fmt::format("job {}: cancelling (SIGTERM sent; SIGKILL after {:g}s)\n", *id,
                       cfg.server.cancel_grace_seconds);
  } else {
    out << fmt::format("job {}: {}\n", *id, str(v.at("state")));
  }
  return kExitOk;
}

int cmd_cost_report(const Config& cfg, const ClientOptions& c, const std::string& since,
                    std::ostream& out, std::ostream& err) {
  auto t = server_or_report(cfg, c, err);
  if (!t) return kExitFailure;
  int code = kExitOk;
  std::string path = "/v1/cost";
  if (!since.empty()) path += "?since=" + url_encode(since);
  auto got = get_json(*t, path, err, &code);
  if (!got) return code;
  const json::value& v = *got;
  if (c.json) {
    out << pretty_json(v);
    return kExitOk;
  }
  auto usd = [](const json::value& x) {
    return x.is_number() ? fmt::format("${:.2f}", x.to_number<double>()) : std::string("-");
  };
  auto env_usd = [&](const json::object& by, const char* env) {
    auto* x = by.if_contains(env);
    return x ? usd(*x) : std::string("$0.00");
  };
  out << fmt::format("spend from {} to {}: {}\n\n", ago(v.at("since")), ago(v.at("until")),
                     usd(v.at("total_usd")));
  std::vector<std::vector<std::string>> days{{"DAY", "LOCAL", "CLOUD", "TOTAL"}};
  for (const auto& d : v.at("days").as_array()) {
    const auto& by = d.at("by_environment").as_object();
    days.push_back(
        {str(d.at("day")), env_usd(by, "local"), env_usd(by, "cloud"), usd(d.at("usd"))});
  }
  const auto& env = v.at("by_environment").as_object();
  days.push_back({"all", env_usd(env, "local"), env_usd(env, "cloud"), usd(v.at("total_usd"))});
  out << columns(days) << "\n";
  std::vector<std::vector<std::string>> jobs{
      {"ID", "NAME", "ENV", "TARGET", "STATE", "HOURS", "RESTARTS", "COST"}};
  for (const auto& jv : v.at("jobs").as_array()) {
    const auto& j = jv.as_object();
    std::string target = j.contains("target") ? str(j.at("target")) : "-";
    if (j.contains("spot") && j.at("spot").as_bool()) target += " (spot)";
    jobs.push_back({str(j.at("id")), str(j.at("name")), str(j.at("environment")), target,
                    str(j.at("state")), fmt::format("{:.2f}", j.at("hours").to_number<double>()),
                    j.contains("restarts") ? str(j.at("restarts")) : "-", usd(j.at("usd"))});
  }
  out << columns(jobs);
  const auto& b = v.at("budget").as_object();
  if (!b.at("monthly_cloud_budget_usd").is_null()) {
    out << fmt::format("\ncloud this month: {} of a {} monthly budget\n",
                       usd(b.at("month_cloud_usd")), usd(b.at("monthly_cloud_budget_usd")));
  } else {
    out << fmt::format("\ncloud this month: {} (no monthly budget set)\n",
                       usd(b.at("month_cloud_usd")));
  }
  return kExitOk;
}

int cmd_status(const Config& cfg, const ClientOptions& c, std::ostream& out, std::ostream& err) {
  auto t = server_or_report(cfg, c, err);
  if (!t) return kExitFailure;
  int code = kExitOk;
  auto got = get_json(*t, "/v1/status", err, &code);
  if (!got) return code;
  const json::value& v = *got;
  if (c.json) {
    out << pretty_json(v);
    return kExitOk;
  }
  const auto& inv = v.at("inventory").as_object();
  std::string jobs;
  for (const auto& kv : v.at("jobs").as_object()) {
    jobs +=
        fmt::format("{}{} {}", jobs.empty() ? "" : ", ", str(kv.value()), std::string(kv.key()));
  }
  out << fmt::format("server:    {} (pid {}, up since {})\n", str(v.at("url")), str(v.at("pid")),
                     ago(v.at("started_at")))
      << fmt::format("state:     {}\n", str(v.at("state_dir")))
      << fmt::format("inventory: {} GPUs from {} ({}): {} free, {} used\n", str(inv.at("gpus")),
                     str(inv.at("source")), str(inv.at("detail")), str(inv.at("free")),
                     str(inv.at("used")))
      << fmt::format("jobs:      {}\n", jobs.empty() ? "none" : jobs);
  return kExitOk;
}

int cmd_gateway_stats(const Config& cfg, const std::optional<std::string>& admin, bool as_json,
                      std::ostream& out, std::ostream& err) {
  HttpClientRequest req;
  req.url = "http://" + admin.value_or(cfg.gateway.admin) + "/metrics";
  req.timeout_seconds = 5;
  auto r = http_request(req);
  if (!r) {
    err << (r.error().code == Errc::kNotFound
                ? fmt::format("error: hylab gateway is not running at {}: start it with 'hylab "
                              "gateway --config "
                              "hylab.yaml'\n",
                              req.url)
                : "error: " + r.error().message + "\n");
    return kExitFailure;
  }
  if (r->status != 200) return report_error(*r, err);
  // Prometheus text: "name{labels} value" lines; comments skipped.
  std::vector<std::vector<std::string>> rows{{"METRIC", "LABELS", "VALUE"}};
  json::array arr;
  std::size_t pos = 0;
  const std::string& text = r->body;
  while (pos < text.size()) {
    std::size_t eol = text.find('\n', pos);
    std::string line = text.substr(pos, eol == std::string::npos ? std::string::npos : eol - pos);
    pos = eol == std::string::npos ? text.size() : eol + 1;
    if (line.empty() || line[0] == '#') continue;
    auto space = line.rfind(' ');
    std::string key = line.substr(0, space);
    std::string value = line.substr(space + 1);
    auto brace = key.find('{');
    std::string name = key.substr(0, brace);
    std::string labels =
        brace == std::string::npos ? "" : key.substr(brace + 1, key.size() - brace - 2);
    rows.push_back({name, labels.empty() ? "-" : labels, value});
    arr.emplace_back(
        json::object{{"metric", name}, {"labels", labels}, {"value", std::stod(value)}});
  }
  if (as_json) {
    out << pretty_json(arr);
  } else {
    out << columns(rows);
  }
  return kExitOk;
}

}  // namespace hylab::cli
