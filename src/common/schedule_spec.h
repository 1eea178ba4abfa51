// A schedule as written (hylab.yaml's `schedules:`, or a POST to /v1/schedules): a cron
// expression in a zone, the job it starts, and the Kubernetes CronJob policies plus
// hylab's own (missed, max_catch_up, jitter). Reading checks form only: types, choices,
// durations, the job spec. The cron expression and the zone are checked by schedule::compile
// (src/schedule/), which keeps date/tz out of common. A ScheduleSpec is a plain value.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/catalog.h"
#include "common/diagnostics.h"

namespace YAML {
class Node;
}

namespace hylab {

// What a firing does while the schedule's last job still runs (Kubernetes' concurrencyPolicy).
enum class Concurrency { kAllow, kForbid, kReplace };
// What happens to the firings missed while serve was down.
enum class Missed { kRunOnce, kRunAll, kSkip };
std::string_view to_string(Concurrency c);
std::string_view to_string(Missed m);

struct ScheduleSpec {
  std::string name;
  std::string cron;
  std::string timezone;  // empty: lab.timezone, else UTC
  // The job: its spec text (a file's whole text, or an inline spec written back as YAML)
  // and where it came from, for messages.
  std::string job_text;
  std::string job_file;
  Concurrency concurrency = Concurrency::kAllow;
  std::optional<double> starting_deadline_seconds;  // later than this: skipped, counted missed
  bool suspend = false;
  int history_succeeded = 3;  // finished jobs kept per schedule
  int history_failed = 1;
  Missed missed = Missed::kRunOnce;
  int max_catch_up = 10;  // run-all: at most this many catch-up runs
  double jitter_seconds = 0;
  // Where the cron and timezone values were written, for the errors schedule::compile gives.
  std::string file;
  int cron_line = 0, cron_column = 0;
  int timezone_line = 0, timezone_column = 0;
  std::string path;  // "schedules[2]" in a config; "" in a request
};

// Names are what job names are: letters, digits, '.', '_' and '-', 1 to 63 characters.
bool valid_schedule_name(std::string_view name);

// Reads one schedule from a mapping. A `job:` string is a file, relative to `base_dir`; a
// mapping is an inline job spec. The job spec is loaded (and so checked) against `catalog`.
struct ScheduleReadContext {
  std::string file;      // for messages: "hylab.yaml" or "request body"
  std::string path;      // "schedules[0]" or ""
  std::string base_dir;  // for a relative job file; empty: relative job files are refused
  const Catalog& catalog;
};
std::optional<ScheduleSpec> read_schedule(const YAML::Node& node, const ScheduleReadContext& ctx,
                                          Diagnostics& diag);
// The same from a YAML or JSON document (the API's request body).
std::optional<ScheduleSpec> load_schedule_text(std::string_view text,
                                               const ScheduleReadContext& ctx, Diagnostics& diag);

}  // namespace hylab
