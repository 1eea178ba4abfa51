#include "schedule/planner.h"

#include <date/tz.h>
#include <fmt/format.h>

#include <deque>

namespace hylab::schedule {

std::optional<Schedule> compile(const ScheduleSpec& spec, const std::string& default_zone,
                                Diagnostics& diag) {
  std::string key = spec.path.empty() ? "" : spec.path + ".";
  auto cron = Cron::parse(spec.cron);
  if (!cron) {
    diag.error(spec.file, spec.cron_line, spec.cron_column, key + "cron", cron.error().message);
  }
  std::string zone_name = !spec.timezone.empty()  ? spec.timezone
                          : !default_zone.empty() ? default_zone
                                                  : "UTC";
  auto zone = find_zone(zone_name);
  if (!zone) {
    if (spec.timezone.empty()) {
      diag.error(spec.file, 0, 0, "lab.timezone", zone.error().message);
    } else {
      diag.error(spec.file, spec.timezone_line, spec.timezone_column, key + "timezone",
                 zone.error().message);
    }
  }
  if (!cron || !zone) return std::nullopt;
  return Schedule{spec, std::move(*cron), *zone, zone_name};
}

std::chrono::seconds jitter_of(const Schedule& s, Instant planned) {
  auto bound = static_cast<std::int64_t>(s.spec.jitter_seconds);
  if (bound <= 0) return std::chrono::seconds(0);
  // splitmix64 of the name's FNV-1a hash and the planned time: the same on every run and
  // machine, spread evenly.
  std::uint64_t x = 0xcbf29ce484222325ULL;
  for (unsigned char c : s.spec.name) x = (x ^ c) * 0x100000001b3ULL;
  x ^= static_cast<std::uint64_t>(planned.time_since_epoch().count());
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return std::chrono::seconds(static_cast<std::int64_t>(x % static_cast<std::uint64_t>(bound)));
}

Plan plan(const Schedule& s, Instant since, Instant now) {
  Plan p;
  const ScheduleSpec& spec = s.spec;
  // The newest due firings, as many as may run: one, or max_catch_up for run-all.
  std::size_t keep =
      spec.missed == Missed::kRunAll ? static_cast<std::size_t>(spec.max_catch_up) : 1;
  std::deque<Instant> newest;
  std::int64_t due = 0;
  Instant t = since;
  while (true) {
    auto n = s.cron.next(t, *s.zone);
    if (!n) break;
    if (start_of(s, *n) > now) {
      p.wake = start_of(s, *n);
      break;
    }
    ++due;
    newest.push_back(*n);
    if (newest.size() > keep) newest.pop_front();
    t = *n;
    if (due == kMaxCounted) {
      // Down for very long with a frequent schedule: count no further one by one, but go
      // on from a day before now, so the newest firings are still found.
      Instant skip_to = now - std::chrono::hours(24);
      if (skip_to > t) t = skip_to;
    }
  }
  if (newest.empty()) return p;
  p.last_planned = newest.back();
  auto late = [&](Instant planned) { return now - start_of(s, planned); };
  for (Instant planned : newest) {
    bool in_time =
        !spec.starting_deadline_seconds ||
        late(planned).count() <= static_cast<std::int64_t>(*spec.starting_deadline_seconds);
    if (spec.missed == Missed::kSkip) in_time = in_time && late(planned) <= kOnTime;
    if (in_time) p.run.push_back(planned);
  }
  p.missed = due - static_cast<std::int64_t>(p.run.size());
  return p;
}

Start on_firing(Concurrency c, bool active) {
  if (!active) return Start::kStart;
  switch (c) {
    case Concurrency::kAllow:
      return Start::kStart;
    case Concurrency::kForbid:
      return Start::kSkip;
    case Concurrency::kReplace:
      return Start::kReplace;
  }
  return Start::kStart;
}

}  // namespace hylab::schedule
