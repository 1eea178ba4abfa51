#include "common/units.h"

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <limits>

#include "common/text.h"

namespace hylab {

Result<double> parse_number(std::string_view text) {
  if (text.empty()) return invalid_input("expected a number, got nothing");
  if (text.front() == '-') return invalid_input("must not be negative, got " + quote(text));
  bool digit_seen = false;
  bool dot_seen = false;
  for (char c : text) {
    if (c >= '0' && c <= '9') {
      digit_seen = true;
    } else if (c == '.' && !dot_seen) {
      dot_seen = true;
    } else {
      return invalid_input("expected a number, got " + quote(text));
    }
  }
  if (!digit_seen) return invalid_input("expected a number, got " + quote(text));
  double v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size() || !std::isfinite(v)) {
    return invalid_input("number out of range: " + quote(text));
  }
  return v;
}

namespace {

struct Suffix {
  std::string_view name;
  std::uint64_t factor;
};

constexpr Suffix kByteSuffixes[] = {
    {"b", 1},      {"k", kKB},        {"kb", kKB},        {"m", kMB},
    {"mb", kMB},   {"g", kGB},        {"gb", kGB},        {"t", kTB},
    {"tb", kTB},   {"p", 1000 * kTB}, {"pb", 1000 * kTB}, {"kib", kKiB},
    {"mib", kMiB}, {"gib", kGiB},     {"tib", kTiB},      {"pib", 1024 * kTiB},
    {"ki", kKiB},  {"mi", kMiB},      {"gi", kGiB},       {"ti", kTiB},
};

}  // namespace

Result<std::uint64_t> parse_bytes(std::string_view raw, std::uint64_t bare_unit) {
  std::string text = trim(raw);
  if (text.empty()) return invalid_input("expected a size such as 250GB or 1.5TiB, got nothing");
  if (text.front() == '-') return invalid_input("a size cannot be negative, got " + quote(text));
  std::size_t i = 0;
  while (i < text.size() && ((text[i] >= '0' && text[i] <= '9') || text[i] == '.')) ++i;
  std::string_view number(text.data(), i);
  std::string unit = to_lower(trim(std::string_view(text).substr(i)));
  auto n = parse_number(number);
  if (!n) {
    return invalid_input("expected a size such as 250GB or 1.5TiB, got " + quote(text));
  }
  std::uint64_t factor = 0;
  if (unit.empty()) {
    factor = bare_unit;
  } else {
    for (const auto& s : kByteSuffixes) {
      if (unit == s.name) factor = s.factor;
    }
    if (factor == 0) {
      return invalid_input("unknown size unit " + quote(unit) + " in " + quote(text) +
                           " (use B, KB, MB, GB, TB, PB or KiB, MiB, GiB, TiB, PiB)");
    }
  }
  long double bytes = static_cast<long double>(*n) * static_cast<long double>(factor);
  if (bytes >= static_cast<long double>(std::numeric_limits<std::uint64_t>::max())) {
    return invalid_input("size too large: " + quote(text));
  }
  return static_cast<std::uint64_t>(std::llround(bytes));
}

Result<double> parse_duration_hours(std::string_view raw) {
  std::string text = to_lower(trim(raw));
  if (text.empty()) return invalid_input("expected a duration such as 4h or 90m, got nothing");
  if (text.front() == '-') return invalid_input("a duration cannot be negative, got " + quote(raw));
  if (auto bare = parse_number(text)) return *bare;
  double hours = 0;
  std::size_t i = 0;
  bool any = false;
  while (i < text.size()) {
    std::size_t start = i;
    while (i < text.size() && ((text[i] >= '0' && text[i] <= '9') || text[i] == '.')) ++i;
    if (i == start || i == text.size()) {
      return invalid_input("expected a duration such as 4h, 90m or 1h30m, got " + quote(raw));
    }
    auto n = parse_number(std::string_view(text).substr(start, i - start));
    if (!n) return invalid_input("expected a duration such as 4h, 90m or 1h30m, got " + quote(raw));
    if (text.compare(i, 2, "ms") == 0) {
      hours += *n / 3.6e6;
      i += 2;
      any = true;
      continue;
    }
    char unit = text[i++];
    switch (unit) {
      case 'd':
        hours += *n * 24;
        break;
      case 'h':
        hours += *n;
        break;
      case 'm':
        hours += *n / 60;
        break;
      case 's':
        hours += *n / 3600;
        break;
      default:
        return invalid_input("unknown duration unit '" + std::string(1, unit) + "' in " +
                             quote(raw) + " (use d, h, m or s)");
    }
    any = true;
  }
  if (!any) return invalid_input("expected a duration such as 4h, got " + quote(raw));
  return hours;
}

std::string format_bytes(std::uint64_t bytes) {
  struct U {
    std::uint64_t f;
    const char* name;
  };
  static constexpr U kBinary[] = {
      {kTiB * 1024, "PiB"}, {kTiB, "TiB"}, {kGiB, "GiB"}, {kMiB, "MiB"}};
  static constexpr U kDecimal[] = {
      {kTB * 1000, "PB"}, {kTB, "TB"}, {kGB, "GB"}, {kMB, "MB"}, {kKB, "KB"}};
  // Prefer the unit system in which the value is a round figure.
  for (const auto& u : kBinary) {
    if (bytes >= u.f && (bytes * 10) % u.f == 0 && bytes % kKB != 0) {
      return fmt::format("{:g} {}", static_cast<double>(bytes) / static_cast<double>(u.f), u.name);
    }
  }
  for (const auto& u : kDecimal) {
    if (bytes >= u.f) {
      return fmt::format("{:.4g} {}", static_cast<double>(bytes) / static_cast<double>(u.f),
                         u.name);
    }
  }
  return fmt::format("{} B", bytes);
}

std::string format_hours(double hours) {
  if (!std::isfinite(hours)) return "forever";
  auto minutes = static_cast<long long>(std::llround(hours * 60));
  if (minutes == 0) return hours > 0 ? "<1m" : "0m";
  long long d = minutes / (24LL * 60);
  long long h = (minutes / 60) % 24;
  long long m = minutes % 60;
  std::string out;
  if (d) out += fmt::format("{}d", d);
  if (h) out += fmt::format("{}h", h);
  if (m) out += fmt::format("{}m", m);
  return out;
}

std::string format_usd(double usd) {
  if (!std::isfinite(usd)) return "n/a";
  if (usd != 0 && std::fabs(usd) < 1) return fmt::format("${:.4g}", usd);
  auto cents = static_cast<long long>(std::llround(std::fabs(usd) * 100));
  std::string whole = std::to_string(cents / 100);
  std::string grouped;
  for (std::size_t i = 0; i < whole.size(); ++i) {
    if (i && (whole.size() - i) % 3 == 0) grouped += ',';
    grouped += whole[i];
  }
  return fmt::format("{}${}.{:02d}", usd < 0 ? "-" : "", grouped, cents % 100);
}

}  // namespace hylab
