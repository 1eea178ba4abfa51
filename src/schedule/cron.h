// Cron expressions with cronie's meaning, in any IANA time zone. Pure: no clock, no files
// beyond the system's tzdata (read once by date/tz); a Cron is a plain value, any thread.
//
// Five fields (minute hour day-of-month month day-of-week) with `*`, lists, ranges, steps
// (`*/15`, `1-30/5`, `5/10` = `5-max/10`), month and day names (`jan`, `mon-fri`), Sunday as 0
// or 7, and the nicknames @yearly @annually @monthly @weekly @daily @midnight @hourly.
//
// cronie's rules:
// - Day of month and day of week are ORed when both fields begin with something other than
//   `*`, else ANDed: `0 12 */2 * 1` is odd days that are Mondays.
// - A *wildcard* job is one whose minute or hour field begins with `*`; every other job is
//   *fixed*.
// - Spring forward: a fixed job whose time falls in the gap fires once, at the first instant
//   after the gap (02:30 Europe/Berlin on 2026-03-29 fires at 03:00 CEST); a wildcard job has
//   no firings inside the gap.
// - Fall back: a fixed job fires once, at the first occurrence; a wildcard job fires in both
//   (`0 * * * *` runs every real hour).
#pragma once

#include <bitset>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace date {
class time_zone;
}

namespace hylab::schedule {

using Instant = std::chrono::sys_seconds;

class Cron {
 public:
  // Refused, naming the field and the value: a field out of range, a wrong number of
  // fields, a zero step, a backwards range, an expression that can never fire
  // (`0 0 31 2 *`), CRON_TZ=/TZ= inside it (give the zone separately).
  static Result<Cron> parse(std::string_view expression);

  // The first firing strictly after `after`, in `zone`; nothing if none within 30 years.
  std::optional<Instant> next(Instant after, const date::time_zone& zone) const;
  // The next `n` firings after `after`.
  std::vector<Instant> next_n(Instant after, const date::time_zone& zone, int n) const;

  // Whether the hour and minute fields name this local time (a firing moved out of a
  // spring-forward gap is at a time they do not name).
  bool names_time(int hour, int minute) const {
    return hours_[static_cast<std::size_t>(hour)] && minutes_[static_cast<std::size_t>(minute)];
  }

  const std::string& expression() const { return expression_; }
  bool wildcard() const { return wildcard_; }

 private:
  bool day_matches(int dom, int month, int dow) const;

  std::string expression_;
  std::bitset<60> minutes_;
  std::bitset<24> hours_;
  std::bitset<32> days_;     // 1-31
  std::bitset<13> months_;   // 1-12
  std::bitset<7> weekdays_;  // 0 = Sunday
  bool dom_star_ = false;
  bool dow_star_ = false;
  bool wildcard_ = false;
};

// An IANA zone from the system's tzdata; an unknown name is refused with a message.
Result<const date::time_zone*> find_zone(std::string_view name);

// "2026-03-29T01:00:00Z" (UTC); parse_instant takes RFC 3339 with Z or an offset.
std::string format_utc(Instant t);
Result<Instant> parse_instant(std::string_view text);
// "2026-03-29 03:00 CEST" in the zone.
std::string format_local(Instant t, const date::time_zone& zone);

}  // namespace hylab::schedule
