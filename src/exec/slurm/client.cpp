// The Slurm commands of one cloud target (see client.h).
#include "exec/slurm/client.h"

#include <fmt/format.h>

#include <boost/json.hpp>
#include <ctime>
#include <filesystem>

#include "exec/command.h"
#include "exec/slurm/batch.h"

namespace hylab::exec::slurm {

bool SlurmJob::ended() const {
  return state == "COMPLETED" || state == "FAILED" || state == "CANCELLED" || state == "TIMEOUT" ||
         state == "NODE_FAIL" || state == "OUT_OF_MEMORY" || state == "BOOT_FAIL" ||
         state == "DEADLINE";
}

std::vector<SlurmJob> parse_scontrol(const std::string& text) {
  std::vector<SlurmJob> jobs;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t eol = text.find('\n', pos);
    std::string line = text.substr(pos, eol == std::string::npos ? std::string::npos : eol - pos);
    pos = eol == std::string::npos ? text.size() : eol + 1;
    if (line.find("JobId=") == std::string::npos) continue;
    SlurmJob j;
    // Fields are "Key=value" separated by spaces; a value runs to the next " Key=".
    std::size_t i = 0;
    while (i < line.size()) {
      while (i < line.size() && line[i] == ' ') ++i;
      std::size_t eq = line.find('=', i);
      if (eq == std::string::npos) break;
      std::string key = line.substr(i, eq - i);
      std::size_t end = eq + 1;
      for (;;) {
        std::size_t sp = line.find(' ', end);
        if (sp == std::string::npos) {
          end = line.size();
          break;
        }
        std::size_t next_eq = line.find('=', sp + 1);
        std::size_t next_sp = line.find(' ', sp + 1);
        if (next_eq != std::string::npos && (next_sp == std::string::npos || next_eq < next_sp)) {
          end = sp;
          break;
        }
        end = sp + 1;
      }
      std::string value = line.substr(eq + 1, end - eq - 1);
      while (!value.empty() && value.back() == ' ') value.pop_back();  // "Comment=x  StdErr="
      i = end;
      auto none = [](const std::string& v) { return v == "Unknown" || v == "None" ? "" : v; };
      if (key == "JobId")
        j.id = value;
      else if (key == "JobName")
        j.name = value;
      else if (key == "Comment")
        j.comment = none(value);
      else if (key == "JobState")
        j.state = value;
      else if (key == "Reason")
        j.reason = none(value);
      else if (key == "Partition")
        j.partition = value;
      else if (key == "Restarts")
        j.restarts = std::atoi(value.c_str());
      else if (key == "StartTime")
        j.start_time = none(value);
      else if (key == "EndTime")
        j.end_time = none(value);
      else if (key == "ExitCode") {
        auto colon = value.find(':');
        if (colon != std::string::npos) {
          int code = std::atoi(value.c_str());
          int sig = std::atoi(value.c_str() + colon + 1);
          if (sig != 0) j.signal = sig;
          j.exit_code = code;
        }
      }
    }
    if (!j.ended()) {
      j.exit_code.reset();
      j.signal.reset();
    }
    if (!j.id.empty()) jobs.push_back(std::move(j));
  }
  return jobs;
}

Result<std::vector<SlurmJob>> parse_squeue_json(const std::string& text) {
  namespace json = boost::json;
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object() || !v.as_object().contains("jobs") || !v.at("jobs").is_array())
    return Error{Errc::kIo,
                 fmt::format("squeue --json answered {:?}, not its job list", text.substr(0, 200))};
  auto str = [](const json::object& o, const char* k) {
    auto* x = o.if_contains(k);
    if (!x) return std::string();
    if (x->is_string()) return std::string(x->as_string());
    if (x->is_int64()) return std::to_string(x->as_int64());
    if (x->is_uint64()) return std::to_string(x->as_uint64());
    return std::string();
  };
  auto num = [](const json::object& o, const char* k) -> std::int64_t {
    auto* x = o.if_contains(k);
    if (!x) return 0;
    if (x->is_int64()) return x->as_int64();
    if (x->is_uint64()) return static_cast<std::int64_t>(x->as_uint64());
    return 0;
  };
  auto iso = [](std::int64_t t) -> std::string {
    if (t <= 0) return "";
    std::time_t tt = static_cast<std::time_t>(t);
    std::tm tm{};
    localtime_r(&tt, &tm);
    char out[32];
    std::strftime(out, sizeof out, "%Y-%m-%dT%H:%M:%S", &tm);
    return out;
  };
  std::vector<SlurmJob> jobs;
  for (const auto& jv : v.at("jobs").as_array()) {
    if (!jv.is_object()) continue;
    const auto& o = jv.as_object();
    SlurmJob j;
    j.id = str(o, "job_id");
    j.name = str(o, "name");
    j.state = str(o, "job_state");
    j.reason = str(o, "state_reason");
    if (j.reason == "None") j.reason.clear();
    j.partition = str(o, "partition");
    j.comment = str(o, "comment");
    j.restarts = static_cast<int>(num(o, "restart_cnt"));
    // Pending jobs carry an expected start: only a job that started has a start time.
    if (j.state != "PENDING") j.start_time = iso(num(o, "start_time"));
    if (!j.id.empty()) jobs.push_back(std::move(j));  // exit codes: from scontrol, once ended
  }
  return jobs;
}

Result<std::string> parse_sbatch(const std::string& out) {
  std::string id = out.substr(0, out.find_first_of(";\n"));
  if (id.empty() || id.find_first_not_of("0123456789_") != std::string::npos)
    return Error{Errc::kIo, fmt::format("sbatch answered {:?}, not a job id", out.substr(0, 200))};
  return id;
}

SlurmClient::SlurmClient(CloudTarget target, double timeout_seconds)
    : target_(std::move(target)), timeout_(timeout_seconds) {}

Result<std::string> SlurmClient::run(std::vector<std::string> argv, const std::string& input,
                                     bool unknown_job_ok) {
  CommandOptions o;
  o.input = input;
  o.timeout_seconds = timeout_;
  std::vector<std::string> cmd;
  if (target_.ssh.empty()) {
    o.env = target_.env;
    cmd = argv;
  } else {  // the remote shell gets one quoted command line, env first
    std::string line = "env";
    // += piece by piece, not " " + ...: gcc 12's false -Wrestrict
    for (const auto& [k, v] : target_.env) {
      line += ' ';
      line += shell_quote(k + "=" + v);
    }
    for (const auto& a : argv) {
      line += ' ';
      line += shell_quote(a);
    }
    cmd = {"ssh", "-o", "BatchMode=yes", target_.ssh, "--", line};
  }
  auto r = run_command(cmd, o);
  if (!r) return r.error();
  std::string where = target_.ssh.empty() ? "" : " on " + target_.ssh;
  if (r->timed_out)
    return Error{Errc::kUnavailable, fmt::format("cloud target {}: {}{} did not answer within {} s",
                                                 target_.name, argv[0], where, timeout_)};
  if (r->exit_code != 0) {
    if (unknown_job_ok && r->err.find("Invalid job id") != std::string::npos) return std::string();
    std::string msg = r->err.empty() ? r->out : r->err;
    while (!msg.empty() && msg.back() == '\n') msg.pop_back();
    return Error{Errc::kIo, fmt::format("cloud target {}: {}{} failed ({}): {}", target_.name,
                                        argv[0], where, r->exit_code, msg.substr(0, 500))};
  }
  return r->out;
}

Result<std::string> SlurmClient::submit(const std::string& script) {
  auto out = run({"sbatch", "--parsable"}, script);
  if (!out) return out.error();
  return parse_sbatch(*out);
}

Result<std::optional<SlurmJob>> SlurmClient::query(const std::string& id) {
  auto out = run({"scontrol", "show", "job", "-o", id}, "", true);
  if (!out) return out.error();
  auto jobs = parse_scontrol(*out);
  for (auto& j : jobs)
    if (j.id == id) return std::optional<SlurmJob>(std::move(j));
  return std::optional<SlurmJob>();
}

Result<std::vector<SlurmJob>> SlurmClient::query_all() {
  auto out = run({"scontrol", "show", "job", "-o"}, "");
  if (!out) return out.error();
  return parse_scontrol(*out);
}

Result<std::vector<SlurmJob>> SlurmClient::query_active() {
  auto out = run({"squeue", "--json"}, "");
  if (!out) return out.error();
  return parse_squeue_json(*out);
}

Result<bool> SlurmClient::cancel(const std::string& id) {
  auto out = run({"scancel", id}, "");
  if (!out) return out.error();
  return true;
}

Result<bool> SlurmClient::move_to_partition(const std::string& id, const std::string& partition) {
  auto out = run({"scontrol", "update", "JobId=" + id, "Partition=" + partition}, "");
  if (!out) return out.error();
  return true;
}

Result<std::vector<std::string>> SlurmClient::fetch(const std::string& remote_dir,
                                                    const std::vector<std::string>& paths,
                                                    const std::string& dest,
                                                    double timeout_seconds) {
  namespace fs = std::filesystem;
  std::vector<std::string> missing, present;
  std::error_code ec;
  fs::create_directories(dest, ec);
  if (ec) return Error{Errc::kIo, fmt::format("cannot create {}: {}", dest, ec.message())};
  for (const auto& p : paths) {
    std::string rel = p;
    while (!rel.empty() && rel.back() == '/') rel.pop_back();
    fs::path rp(rel);
    bool escapes = rel.empty() || rp.is_absolute();
    for (const auto& part : rp) escapes = escapes || part == "..";
    if (escapes) {
      missing.push_back(p + " (outputs are paths inside the job's folder)");
      continue;
    }
    if (target_.ssh.empty()) {
      fs::path from = fs::path(remote_dir) / rp, to = fs::path(dest) / rp;
      if (!fs::exists(from, ec)) {
        missing.push_back(p);
        continue;
      }
      fs::create_directories(to.parent_path(), ec);
      fs::copy(from, to,
               fs::copy_options::recursive | fs::copy_options::overwrite_existing |
                   fs::copy_options::copy_symlinks,
               ec);
      if (ec)
        return Error{Errc::kIo, fmt::format("cannot copy {}: {}", from.string(), ec.message())};
    } else {
      present.push_back(rel);
    }
  }
  if (present.empty()) return missing;
  // One tar stream through ssh; paths missing there are reported by tar and skipped.
  std::string remote = "cd ";
  remote += shell_quote(remote_dir);
  remote += " && for p in";
  for (const auto& p : present) {
    remote += ' ';
    remote += shell_quote(p);
  }
  remote += "; do [ -e \"$p\" ] && printf '%s\\0' \"$p\"; done | tar --null -T - -cf -";
  std::string line = "ssh -o BatchMode=yes " + shell_quote(target_.ssh) + " -- " +
                     shell_quote(remote) + " | tar -C " + shell_quote(dest) + " -xf -";
  CommandOptions o;
  o.timeout_seconds = timeout_seconds;
  auto r = run_command({"/bin/bash", "-c", "set -o pipefail; " + line}, o);
  if (!r) return r.error();
  if (r->timed_out || r->exit_code != 0) {
    return Error{Errc::kIo,
                 fmt::format("cloud target {}: copying the outputs from {} failed: {}",
                             target_.name, target_.ssh,
                             r->timed_out ? "no end within the deadline" : r->err.substr(0, 500))};
  }
  for (const auto& p : present) {
    if (!fs::exists(fs::path(dest) / p, ec)) missing.push_back(p);
  }
  return missing;
}

}  // namespace hylab::exec::slurm
