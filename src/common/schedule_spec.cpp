#include "common/schedule_spec.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "common/config.h"
#include "common/job_spec.h"
#include "common/yaml_reader.h"

namespace hylab {

std::string_view to_string(Concurrency c) {
  switch (c) {
    case Concurrency::kAllow:
      return "allow";
    case Concurrency::kForbid:
      return "forbid";
    case Concurrency::kReplace:
      return "replace";
  }
  return "allow";
}

std::string_view to_string(Missed m) {
  switch (m) {
    case Missed::kRunOnce:
      return "run-once";
    case Missed::kRunAll:
      return "run-all";
    case Missed::kSkip:
      return "skip";
  }
  return "run-once";
}

bool valid_schedule_name(std::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return name.front() != '.' && name.front() != '-';
}

namespace {

int line_of(const YAML::Node& n) { return n.Mark().is_null() ? 0 : n.Mark().line + 1; }
int column_of(const YAML::Node& n) { return n.Mark().is_null() ? 0 : n.Mark().column + 1; }

// A duration in seconds: "30s", "5m", "2h", "1d"; at most a year.
std::optional<double> seconds(yaml::MapReader& m, std::string_view key) {
  auto h = m.hours(key);
  if (!h) return std::nullopt;
  if (*h > 24 * 366) {
    yaml::error_at(m.where(), m.node()[std::string(key)], m.key_path(key), "at most a year (366d)");
    return std::nullopt;
  }
  return *h * 3600;
}

// The job: a file (relative to base_dir) or an inline spec; either is loaded to check it.
void read_job(const yaml::Where& w, const YAML::Node& n, const std::string& key,
              const ScheduleReadContext& ctx, ScheduleSpec& s) {
  if (n.IsScalar()) {
    std::string path = n.Scalar();
    if (path.empty()) {
      yaml::error_at(w, n, key, "expected a job spec file or an inline job spec");
      return;
    }
    if (path[0] != '/') {
      if (ctx.base_dir.empty()) {
        yaml::error_at(
            w, n, key,
            fmt::format("'{}' is relative: give an absolute path or the spec inline", path));
        return;
      }
      path = ctx.base_dir + "/" + path;
    }
    auto text = read_text_file(path, yaml::kMaxDocumentBytes);
    if (!text) {
      yaml::error_at(w, n, key, text.error().message);
      return;
    }
    s.job_text = std::move(*text);
    s.job_file = path;
  } else if (n.IsMap()) {
    YAML::Emitter e;
    e << n;
    s.job_text = std::string(e.c_str()) + "\n";
    s.job_file = fmt::format("{} ({}, line {})", w.file, key, line_of(n));
  } else {
    yaml::error_at(w, n, key,
                   fmt::format("expected a job spec file or an inline job spec (a mapping), got {}",
                               yaml::type_name(n)));
    return;
  }
  Diagnostics jd;
  auto pipe = load_pipeline_text(s.job_text, s.job_file, ctx.catalog, jd);
  for (const auto& d : jd.items()) {
    if (d.severity == Diagnostic::Severity::kError)
      yaml::error_at(w, n, key, fmt::format("the job spec: {}", d.str()));
  }
  if (!pipe && jd.error_count() == 0) yaml::error_at(w, n, key, "the job spec cannot be read");
}

}  // namespace

std::optional<ScheduleSpec> read_schedule(const YAML::Node& node, const ScheduleReadContext& ctx,
                                          Diagnostics& diag) {
  std::size_t errors_before = diag.error_count();
  yaml::Where w{ctx.file, diag};
  yaml::MapReader m(w, node, ctx.path);
  if (!m.ok()) return std::nullopt;
  ScheduleSpec s;
  s.file = ctx.file;
  s.path = ctx.path;
  if (auto n = m.take("name")) {
    auto v = yaml::as_string(w, *n, m.key_path("name"));
    if (v && !valid_schedule_name(*v)) {
      yaml::error_at(w, *n, m.key_path("name"),
                     fmt::format("'{}' is not a schedule name: use 1 to 63 letters, digits, '.', "
                                 "'_' or '-', not starting with '.' or '-'",
                                 *v));
    } else if (v) {
      s.name = *v;
    }
  } else {
    yaml::error_at(w, node, m.key_path("name"), "every schedule needs a name");
  }
  if (auto n = m.take("cron")) {
    if (auto v = yaml::as_string(w, *n, m.key_path("cron"))) {
      s.cron = *v;
      s.cron_line = line_of(*n);
      s.cron_column = column_of(*n);
    }
  } else {
    yaml::error_at(w, node, m.key_path("cron"),
                   "every schedule needs cron: such as \"0 2 * * 0\" (Sundays at 02:00)");
  }
  if (auto n = m.take("timezone"); n && !n->IsNull()) {
    if (auto v = yaml::as_string(w, *n, m.key_path("timezone"))) {
      s.timezone = *v;
      s.timezone_line = line_of(*n);
      s.timezone_column = column_of(*n);
    }
  }
  if (auto n = m.take("job")) {
    read_job(w, *n, m.key_path("job"), ctx, s);
  } else {
    yaml::error_at(w, node, m.key_path("job"),
                   "every schedule needs job: a job spec file or an inline job spec");
  }
  if (auto v = m.choice("concurrency", {"allow", "forbid", "replace"})) {
    s.concurrency = *v == "forbid"    ? Concurrency::kForbid
                    : *v == "replace" ? Concurrency::kReplace
                                      : Concurrency::kAllow;
  }
  s.starting_deadline_seconds = seconds(m, "starting_deadline");
  if (auto v = m.boolean("suspend")) s.suspend = *v;
  if (auto h = m.take("history"); h && !h->IsNull()) {
    yaml::MapReader hm(w, *h, m.key_path("history"));
    if (hm.ok()) {
      if (auto v = hm.integer("succeeded", 0, 1000)) s.history_succeeded = static_cast<int>(*v);
      if (auto v = hm.integer("failed", 0, 1000)) s.history_failed = static_cast<int>(*v);
      hm.finish();
    }
  }
  if (auto v = m.choice("missed", {"run-once", "run-all", "skip"})) {
    s.missed = *v == "run-all" ? Missed::kRunAll : *v == "skip" ? Missed::kSkip : Missed::kRunOnce;
  }
  if (auto v = m.integer("max_catch_up", 1, 1000)) s.max_catch_up = static_cast<int>(*v);
  if (auto v = seconds(m, "jitter")) s.jitter_seconds = *v;
  m.finish();
  if (diag.error_count() > errors_before) return std::nullopt;
  return s;
}

std::optional<ScheduleSpec> load_schedule_text(std::string_view text,
                                               const ScheduleReadContext& ctx, Diagnostics& diag) {
  auto doc = yaml::parse(text, ctx.file, diag);
  if (!doc) return std::nullopt;
  return read_schedule(*doc, ctx, diag);
}

}  // namespace hylab
