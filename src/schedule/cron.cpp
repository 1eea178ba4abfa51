// Cron expressions, cronie's rules, in IANA zones (see cron.h).
#include "schedule/cron.h"

#include <date/date.h>
#include <date/tz.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <sstream>

#include "common/text.h"

namespace hylab::schedule {

namespace {

struct Field {
  const char* name;
  int min;
  int max;
  const char* const* names;  // 3-letter names for min..., or nullptr
};

constexpr const char* kMonthNames[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                       "jul", "aug", "sep", "oct", "nov", "dec"};
constexpr const char* kDayNames[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

constexpr std::array<Field, 5> kFields = {{{"minute", 0, 59, nullptr},
                                           {"hour", 0, 23, nullptr},
                                           {"day-of-month", 1, 31, nullptr},
                                           {"month", 1, 12, kMonthNames},
                                           {"day-of-week", 0, 7, kDayNames}}};

Error field_error(const Field& f, std::string_view value, const std::string& why) {
  return invalid_input(fmt::format("{}: {} {}", f.name, quote(value), why));
}

// A number or a name ("jan", "mon"), within the field's range.
Result<int> value_of(const Field& f, const std::string& text) {
  if (text.empty()) return field_error(f, text, "is empty");
  if (std::all_of(text.begin(), text.end(), [](char c) { return std::isdigit(c) != 0; })) {
    if (text.size() > 4)
      return field_error(f, text, fmt::format("is out of range {}-{}", f.min, f.max));
    int v = std::stoi(text);
    if (v < f.min || v > f.max)
      return field_error(f, text, fmt::format("is out of range {}-{}", f.min, f.max));
    return v;
  }
  if (f.names) {
    std::string lower = to_lower(text);
    int count = f.max == 7 ? 7 : 12;
    for (int i = 0; i < count; ++i) {
      if (lower == f.names[i]) return f.max == 7 ? i : i + 1;
    }
    return field_error(f, text,
                       f.max == 7 ? "is not a day (0-7 or sun, mon, tue, wed, thu, fri, sat)"
                                  : "is not a month (1-12 or jan ... dec)");
  }
  return field_error(f, text, fmt::format("is not a number from {} to {}", f.min, f.max));
}

// One field: "*", "5", "1-5", "*/15", "1-30/5", "5/10", lists of those. Sets `bits` (for the
// day of week, 7 is Sunday, 0).
template <std::size_t N>
Result<bool> parse_field(const Field& f, const std::string& text, std::bitset<N>& bits) {
  std::size_t from = 0;
  while (true) {
    auto comma = text.find(',', from);
    std::string part = text.substr(from, comma == std::string::npos ? comma : comma - from);
    if (part.empty()) return field_error(f, text, "has an empty list item");
    int step = 1;
    std::string range = part;
    if (auto slash = part.find('/'); slash != std::string::npos) {
      range = part.substr(0, slash);
      std::string s = part.substr(slash + 1);
      if (s.empty() || s.size() > 4 ||
          !std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(c) != 0; }))
        return field_error(f, part, "has a step that is not a whole number");
      step = std::stoi(s);
      if (step == 0) return field_error(f, part, "has a step of 0");
    }
    int low = f.min, high = f.max;
    if (range == "*") {
      if (f.max == 7) high = 6;  // "*" is each day once
    } else {
      auto dash = range.find('-');
      auto lo = value_of(f, range.substr(0, dash));
      if (!lo) return lo.error();
      low = *lo;
      if (dash != std::string::npos) {
        auto hi = value_of(f, range.substr(dash + 1));
        if (!hi) return hi.error();
        high = *hi;
        if (high < low) return field_error(f, part, "is a range that runs backwards");
      } else if (part.find('/') == std::string::npos) {
        high = low;  // a single value; "5/10" runs to the field's end
      }
    }
    for (int v = low; v <= high; v += step)
      bits.set(static_cast<std::size_t>(f.max == 7 && v == 7 ? 0 : v));
    if (comma == std::string::npos) return true;
    from = comma + 1;
  }
}

int days_in_month(int month) {
  static constexpr int kDays[] = {0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return kDays[month];
}

}  // namespace

Result<Cron> Cron::parse(std::string_view expression) {
  std::string e = trim(expression);
  Cron c;
  c.expression_ = e;
  if (e.empty()) return invalid_input("the cron expression is empty: give five fields or @daily");
  std::string lower = to_lower(e);
  if (lower.rfind("cron_tz=", 0) == 0 || lower.rfind("tz=", 0) == 0) {
    return invalid_input(fmt::format(
        "{}: a time zone inside the expression is not read: give it as timezone: (or --tz)",
        quote(e.substr(0, e.find(' ')))));
  }
  if (e[0] == '@') {
    static const std::pair<const char*, const char*> kNicknames[] = {
        {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
        {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
        {"@hourly", "0 * * * *"}};
    for (const auto& [nick, fields] : kNicknames) {
      if (lower == nick) {
        auto r = parse(fields);
        if (r) r->expression_ = e;
        return r;
      }
    }
    if (lower == "@reboot")
      return invalid_input("@reboot is not a time: a schedule needs a clock (such as @daily)");
    return invalid_input(
        fmt::format("{} is not a cron nickname: use @yearly, @annually, @monthly, @weekly, @daily, "
                    "@midnight or @hourly",
                    quote(e)));
  }
  std::vector<std::string> fields;
  std::istringstream in(e);
  for (std::string f; in >> f;) fields.push_back(f);
  if (fields.size() != 5) {
    return invalid_input(
        fmt::format("{}: expected 5 fields (minute hour day-of-month month day-of-week), got {}",
                    quote(e), fields.size()));
  }
  Result<bool> ok = parse_field(kFields[0], fields[0], c.minutes_);
  if (ok) ok = parse_field(kFields[1], fields[1], c.hours_);
  if (ok) ok = parse_field(kFields[2], fields[2], c.days_);
  if (ok) ok = parse_field(kFields[3], fields[3], c.months_);
  if (ok) ok = parse_field(kFields[4], fields[4], c.weekdays_);
  if (!ok) return ok.error();
  c.dom_star_ = fields[2][0] == '*';
  c.dow_star_ = fields[4][0] == '*';
  c.wildcard_ = fields[0][0] == '*' || fields[1][0] == '*';
  // ANDed days need a day of month that some chosen month has.
  if (c.dom_star_ || c.dow_star_) {
    bool possible = false;
    for (int m = 1; m <= 12; ++m) {
      for (int d = 1; d <= days_in_month(m) && !possible; ++d)
        possible = c.months_[static_cast<std::size_t>(m)] && c.days_[static_cast<std::size_t>(d)];
    }
    if (!possible) {
      return invalid_input(
          fmt::format("{}: can never fire: no chosen month has the chosen day of month", quote(e)));
    }
  }
  return c;
}

bool Cron::day_matches(int dom, int month, int dow) const {
  if (!months_[static_cast<std::size_t>(month)]) return false;
  bool d = days_[static_cast<std::size_t>(dom)];
  bool w = weekdays_[static_cast<std::size_t>(dow)];
  return dom_star_ || dow_star_ ? d && w : d || w;
}

std::optional<Instant> Cron::next(Instant after, const date::time_zone& zone) const {
  using namespace std::chrono;
  const date::local_seconds start = zone.to_local(after);
  date::local_days day = date::floor<date::days>(start);
  const int start_hour = static_cast<int>(date::floor<hours>(start - day).count());
  // Offsets change by at most a few hours in a day: a local hour three past the best
  // candidate's cannot beat it, and on the first day three hours before `after` cannot follow it.
  constexpr int kMargin = 3;
  for (int i = 0; i < 366 * 30; ++i, day += date::days{1}) {
    date::year_month_day ymd{day};
    int dow = static_cast<int>(date::weekday{day}.c_encoding());
    if (!day_matches(static_cast<int>(static_cast<unsigned>(ymd.day())),
                     static_cast<int>(static_cast<unsigned>(ymd.month())), dow))
      continue;
    std::optional<Instant> best;
    int best_hour = 0;
    for (int h = i == 0 ? std::max(0, start_hour - kMargin) : 0; h < 24; ++h) {
      if (best && h > best_hour + kMargin) break;
      if (!hours_[static_cast<std::size_t>(h)]) continue;
      for (int m = 0; m < 60; ++m) {
        if (!minutes_[static_cast<std::size_t>(m)]) continue;
        date::local_seconds ls = day + hours{h} + minutes{m};
        date::local_info info = zone.get_info(ls);
        auto consider = [&](Instant t) {
          if (t > after && (!best || t < *best)) {
            best = t;
            best_hour = h;
          }
        };
        switch (info.result) {
          case date::local_info::unique:
            consider(Instant{ls.time_since_epoch() - info.first.offset});
            break;
          case date::local_info::nonexistent:  // in a spring-forward gap
            if (!wildcard_) consider(Instant{info.second.begin});
            break;
          case date::local_info::ambiguous:  // in a fall-back repeat
            consider(Instant{ls.time_since_epoch() - info.first.offset});
            if (wildcard_) consider(Instant{ls.time_since_epoch() - info.second.offset});
            break;
        }
      }
    }
    if (best) return best;
  }
  return std::nullopt;
}

std::vector<Instant> Cron::next_n(Instant after, const date::time_zone& zone, int n) const {
  std::vector<Instant> out;
  for (int i = 0; i < n; ++i) {
    auto t = next(after, zone);
    if (!t) break;
    out.push_back(*t);
    after = *t;
  }
  return out;
}

Result<const date::time_zone*> find_zone(std::string_view name) {
  if (name.empty()) return invalid_input("the time zone is empty: give an IANA name such as UTC");
  try {
    return date::locate_zone(std::string(name));
  } catch (const std::exception&) {
    return invalid_input(fmt::format(
        "{} is not a time zone this system's tzdata knows (IANA names such as Europe/Berlin, "
        "America/New_York, UTC)",
        quote(name)));
  }
}

std::string format_utc(Instant t) { return date::format("%Y-%m-%dT%H:%M:%SZ", t); }

std::string format_local(Instant t, const date::time_zone& zone) {
  return date::format("%Y-%m-%d %H:%M %Z", date::make_zoned(&zone, t));
}

Result<Instant> parse_instant(std::string_view text) {
  std::string s = trim(text);
  for (const char* fmt : {"%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S%Ez", "%Y-%m-%dT%H:%MZ"}) {
    std::istringstream in(s);
    Instant t;
    in >> date::parse(fmt, t);
    if (!in.fail() && in.peek() == std::char_traits<char>::eof()) return t;
  }
  return invalid_input(fmt::format(
      "{} is not an RFC 3339 time such as 2026-03-29T01:00:00Z or 2026-03-29T03:00:00+02:00",
      quote(s)));
}

}  // namespace hylab::schedule
