#include "cli/schedule.h"

#include <fmt/format.h>

#include <boost/json.hpp>
#include <chrono>

#include "cli/app.h"
#include "cli/output.h"
#include "schedule/cron.h"

namespace hylab::cli {

int cmd_schedule_next(const ScheduleNextOptions& o, bool json, std::ostream& out,
                      std::ostream& err) {
  auto cron = schedule::Cron::parse(o.expression);
  if (!cron) {
    err << "error: " << cron.error().message << "\n";
    return kExitBadInput;
  }
  auto zone = schedule::find_zone(o.timezone);
  if (!zone) {
    err << "error: --tz: " << zone.error().message << "\n";
    return kExitBadInput;
  }
  schedule::Instant from =
      std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now());
  if (o.from) {
    auto t = schedule::parse_instant(*o.from);
    if (!t) {
      err << "error: --from: " << t.error().message << "\n";
      return kExitBadInput;
    }
    from = *t;
  }
  auto next = cron->next_n(from, **zone, o.count);
  if (json) {
    boost::json::array arr;
    for (auto t : next) arr.emplace_back(schedule::format_utc(t));
    out << pretty_json(boost::json::object{
        {"expression", cron->expression()}, {"timezone", o.timezone}, {"next", std::move(arr)}});
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows{{fmt::format("LOCAL ({})", o.timezone), "UTC"}};
  for (auto t : next) rows.push_back({schedule::format_local(t, **zone), schedule::format_utc(t)});
  out << columns(rows);
  if (next.empty()) err << "no firing within 30 years\n";
  return kExitOk;
}

}  // namespace hylab::cli
