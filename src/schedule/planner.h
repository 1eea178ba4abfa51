// A schedule compiled (its cron expression and zone checked) and the pure rules of its
// firings: which planned times are due at an instant, which of them run and which are
// missed (starting_deadline, missed: run-once|run-all|skip, max_catch_up), the jitter of each,
// and what concurrency does with a job still running. No clock and no store: the scheduler
// in serve supplies both, and tests drive it with any clock they like. Any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/diagnostics.h"
#include "common/schedule_spec.h"
#include "schedule/cron.h"

namespace hylab::schedule {

struct Schedule {
  ScheduleSpec spec;
  Cron cron;
  const date::time_zone* zone = nullptr;
  std::string zone_name;
};

// Checks the cron expression and the zone (the spec's, else `default_zone`, else UTC);
// errors name the file, line and field where they were written.
std::optional<Schedule> compile(const ScheduleSpec& spec, const std::string& default_zone,
                                Diagnostics& diag);

// The delay of one firing: the same for the same schedule and planned time (so a restart
// keeps it), spread evenly over [0, jitter).
std::chrono::seconds jitter_of(const Schedule& s, Instant planned);
// The instant a planned firing starts its job: planned + its jitter.
inline Instant start_of(const Schedule& s, Instant planned) {
  return planned + jitter_of(s, planned);
}

// A firing is on time while it is at most this late; `missed: skip` runs only such firings.
inline constexpr std::chrono::seconds kOnTime{60};
// Missed firings are counted one by one up to this many; beyond, the count is a lower bound.
inline constexpr std::int64_t kMaxCounted = 100000;

struct Plan {
  std::vector<Instant> run;             // planned times to start now, oldest first
  std::int64_t missed = 0;              // due firings not run
  std::optional<Instant> last_planned;  // the newest due firing (run or missed); unset: none due
  std::optional<Instant> wake;          // when the next firing starts; unset: never again
};

// The firings after `since` (the last planned time handled, or the schedule's creation)
// whose start is at or before `now`. A clock that went back (now < since) has none due.
Plan plan(const Schedule& s, Instant since, Instant now);

// What a firing does while `active` jobs of its schedule have not ended.
enum class Start { kStart, kSkip, kReplace };
Start on_firing(Concurrency c, bool active);

}  // namespace hylab::schedule
