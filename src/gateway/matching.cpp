#include "gateway/matching.h"

#include <cctype>
#include <charconv>
#include <system_error>

namespace hylab::gateway {

// '*' matches any run of characters; everything else literally.
bool glob_match(std::string_view pattern, std::string_view text) {
  std::size_t p = 0;
  std::size_t t = 0;
  std::size_t star = std::string_view::npos;
  std::size_t mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (p < pattern.size() && pattern[p] == text[t]) {
      ++p;
      ++t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

// A content pattern: case-insensitive, '#' matches one digit.
bool contains_pattern(std::string_view text, std::string_view pattern) {
  if (pattern.empty() || pattern.size() > text.size()) return false;
  auto lower = [](char c) {
    return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  };
  for (std::size_t i = 0; i + pattern.size() <= text.size(); ++i) {
    std::size_t k = 0;
    for (; k < pattern.size(); ++k) {
      char c = text[i + k];
      char want = pattern[k];
      if (want == '#' ? !std::isdigit(static_cast<unsigned char>(c)) : lower(c) != lower(want))
        break;
    }
    if (k == pattern.size()) return true;
  }
  return false;
}

// Retry-After in seconds (a number; an HTTP date counts as 5 s).
double retry_after_seconds(std::string_view v) {
  double s = 0;
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), s);
  return ec == std::errc() ? s : 5;
}

// The text of the last `"usage": {...}` object in a JSON document, or nothing. A key
// is the only place the quoted word can stand before a colon (inside a string its
// quotes would be escaped), so only that object needs parsing, not the whole answer.
std::string_view usage_object(std::string_view json) {
  constexpr std::string_view kKey = "\"usage\"";
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  for (std::size_t at = json.rfind(kKey); at != std::string_view::npos;
       at = at == 0 ? std::string_view::npos : json.rfind(kKey, at - 1)) {
    std::size_t i = at + kKey.size();
    while (i < json.size() && space(json[i])) ++i;
    if (i >= json.size() || json[i] != ':') continue;
    ++i;
    while (i < json.size() && space(json[i])) ++i;
    if (i >= json.size() || json[i] != '{') continue;
    int depth = 0;
    bool in_string = false;
    for (std::size_t k = i; k < json.size(); ++k) {
      char c = json[k];
      if (in_string) {
        if (c == '\\') {
          ++k;
        } else if (c == '"') {
          in_string = false;
        }
      } else if (c == '"') {
        in_string = true;
      } else if (c == '{') {
        ++depth;
      } else if (c == '}' && --depth == 0) {
        return json.substr(i, k - i + 1);
      }
    }
    return {};
  }
  return {};
}

}  // namespace hylab::gateway
