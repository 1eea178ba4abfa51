// Units used in configuration and job specs: byte sizes ("250GB", "1.5TiB"), durations
// ("4h", "90m", "1h30m") and money. Parsing is strict (no negative sizes, no trailing
// garbage, no overflow) and returns a message that says what was expected. Pure: any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"

namespace hylab {

// A number of seconds (as configs give timeouts) as a steady_clock duration, for timers
// and deadlines.
inline std::chrono::steady_clock::duration from_seconds(double s) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(s));
}

// Decimal units as storage vendors and clouds use them, binary ones as RAM does.
inline constexpr std::uint64_t kKB = 1000ULL;
inline constexpr std::uint64_t kMB = 1000ULL * kKB;
inline constexpr std::uint64_t kGB = 1000ULL * kMB;
inline constexpr std::uint64_t kTB = 1000ULL * kGB;
inline constexpr std::uint64_t kKiB = 1024ULL;
inline constexpr std::uint64_t kMiB = 1024ULL * kKiB;
inline constexpr std::uint64_t kGiB = 1024ULL * kMiB;
inline constexpr std::uint64_t kTiB = 1024ULL * kGiB;

// Hours in an average month (8760 / 12), the basis of every monthly figure.
inline constexpr double kHoursPerMonth = 730.0;

// Parses a non-negative decimal number with no sign, exponent, or trailing characters.
Result<double> parse_number(std::string_view text);

// "250GB", "1.5 TiB", "512MiB", "4T", "100". A bare number is in `bare_unit` bytes
// (SkyPilot's memory and disk_size are bare GB). Suffixes are case-insensitive;
// K/M/G/T/P with or without B are decimal, KiB/MiB/GiB/TiB/PiB binary.
Result<std::uint64_t> parse_bytes(std::string_view text, std::uint64_t bare_unit);

// "4h", "90m", "30s", "500ms", "2d", "1h30m"; a bare number is in hours. Returns hours.
Result<double> parse_duration_hours(std::string_view text);

// 250000000000 -> "250 GB"; 1649267441664 -> "1.5 TiB" when exact in binary units.
std::string format_bytes(std::uint64_t bytes);
// 1.5 -> "1h30m"; 0.25 -> "15m"; 49.5 -> "2d1h30m".
std::string format_hours(double hours);
// 1825 -> "$1,825.00"; 0.0416 -> "$0.0416".
std::string format_usd(double usd);

}  // namespace hylab
