// `hylab schedule ...`: cron expressions and, later, the control plane's schedules.
#pragma once

#include <optional>
#include <ostream>
#include <string>

namespace hylab::cli {

struct ScheduleNextOptions {
  std::string expression;
  std::string timezone = "UTC";
  std::optional<std::string> from;  // RFC 3339; default: now
  int count = 5;
};

// Prints the next firings, local time beside UTC; `json`: {"expression", "timezone", "next"}.
int cmd_schedule_next(const ScheduleNextOptions& o, bool json, std::ostream& out,
                      std::ostream& err);

}  // namespace hylab::cli
