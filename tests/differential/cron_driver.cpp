// hylab's side of the cron differential test (cron_run.js): reads "EXPR<TAB>ZONE<TAB>FROM"
// lines and prints, a line each, the next firing strictly after FROM in UTC
// ("2026-03-29T01:00:00Z"), "none", "moved" before it when that firing is a fixed time moved
// out of a spring-forward gap, or "error: MESSAGE".
#include <date/tz.h>

#include <iostream>
#include <string>

#include "schedule/cron.h"

int main() {
  using namespace hylab::schedule;
  std::ios::sync_with_stdio(false);
  std::string line;
  while (std::getline(std::cin, line)) {
    auto t1 = line.find('\t');
    auto t2 = line.find('\t', t1 + 1);
    auto cron = Cron::parse(line.substr(0, t1));
    if (!cron) {
      std::cout << "error: " << cron.error().message << "\n";
      continue;
    }
    auto zone = find_zone(line.substr(t1 + 1, t2 - t1 - 1));
    auto from = parse_instant(line.substr(t2 + 1));
    if (!zone || !from) {
      std::cout << "error: bad zone or time\n";
      continue;
    }
    auto next = cron->next(*from, **zone);
    if (!next) {
      std::cout << "none\n";
      continue;
    }
    // Moved out of a gap: the local time it fires at is not one the expression names.
    auto local = (*zone)->to_local(*next);
    date::hh_mm_ss<std::chrono::seconds> hms{local - date::floor<date::days>(local)};
    bool moved = !cron->names_time(static_cast<int>(hms.hours().count()),
                                   static_cast<int>(hms.minutes().count()));
    std::cout << (moved ? "moved " : "") << format_utc(*next) << "\n";
  }
  return 0;
}
