// libFuzzer target over the cron parser: any bytes parse or are refused with a message;
// an expression that parses yields its next firings in UTC and in zones with DST gaps and
// repeats (one with a 30-minute shift) without crashing, hanging or going backwards.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "schedule/cron.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace hylab::schedule;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto cron = Cron::parse(text);
  if (!cron) {
    if (cron.error().message.empty()) std::abort();
    return 0;
  }
  static const auto* zones = new std::array<const date::time_zone*, 3>{
      *find_zone("UTC"), *find_zone("Europe/Berlin"), *find_zone("Australia/Lord_Howe")};
  Instant from{std::chrono::seconds(1774742400)};  // 2026-03-29T00:00:00Z, a DST change
  for (const auto* z : *zones) {
    auto next = cron->next_n(from, *z, 3);
    for (std::size_t i = 1; i < next.size(); ++i) {
      if (next[i] <= next[i - 1]) std::abort();
    }
  }
  return 0;
}
