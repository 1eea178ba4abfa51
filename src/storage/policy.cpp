// What never leaves the lab (see policy.h).
#include "storage/policy.h"

#include <fmt/format.h>

#include <filesystem>

namespace hylab::storage {
namespace {

std::atomic<std::uint64_t> g_refused{0};

bool has_glob(std::string_view s) { return s.find_first_of("*?[") != std::string_view::npos; }

std::string normalize(const std::string& p, const std::string& base) {
  std::filesystem::path path(p);
  if (path.is_relative()) path = std::filesystem::path(base) / path;
  std::error_code ec;
  auto abs = std::filesystem::absolute(path, ec);
  std::string s = (ec ? path : abs).lexically_normal().generic_string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

// The rule covers the path itself or one of its folders.
bool covers(const std::string& rule, const std::string& path) {
  if (!has_glob(rule)) {
    return path == rule || (path.size() > rule.size() && path.rfind(rule, 0) == 0 &&
                            (rule == "/" || path[rule.size()] == '/'));
  }
  std::string p = path;
  for (;;) {
    if (path_glob_match(rule, p)) return true;
    auto slash = p.rfind('/');
    if (slash == std::string::npos || slash == 0) return false;
    p.resize(slash);
  }
}

}  // namespace

bool path_glob_match(std::string_view pat, std::string_view s) {
  // Recursive: patterns in a config are short, and "**" next to '*' needs real backtracking.
  if (pat.empty()) return s.empty();
  if (pat.substr(0, 2) == "**") {
    std::string_view rest = pat.substr(2);
    if (!rest.empty() && rest.front() == '/') {  // "**/": zero or more whole folders
      rest.remove_prefix(1);
      if (path_glob_match(rest, s)) return true;
      for (std::size_t i = 0; i < s.size(); ++i)
        if (s[i] == '/' && path_glob_match(rest, s.substr(i + 1))) return true;
      return false;
    }
    for (std::size_t i = 0; i <= s.size(); ++i)
      if (path_glob_match(rest, s.substr(i))) return true;
    return false;
  }
  if (pat.front() == '*') {
    for (std::size_t i = 0; i <= s.size(); ++i) {
      if (path_glob_match(pat.substr(1), s.substr(i))) return true;
      if (i < s.size() && s[i] == '/') break;  // '*' stays inside one folder
    }
    return false;
  }
  if (s.empty()) return false;
  if (pat.front() == '?' ? s.front() == '/' : pat.front() != s.front()) return false;
  return path_glob_match(pat.substr(1), s.substr(1));
}

// The same path with symlinks resolved (as far as it exists). A glob resolves the folders
// before its first wildcard.
std::string resolved(const std::string& normalized) {
  std::string head = normalized, tail;
  if (auto g = normalized.find_first_of("*?["); g != std::string::npos) {
    auto slash = normalized.rfind('/', g);
    head = normalized.substr(0, slash == std::string::npos ? 0 : slash);
    tail = normalized.substr(head.size());
  }
  std::error_code ec;
  auto canon = std::filesystem::weakly_canonical(head.empty() ? "/" : head, ec);
  if (ec) return normalized;
  std::string out = canon.generic_string();
  if (out.size() > 1 && out.back() == '/') out.pop_back();
  if (out == "/" && !tail.empty()) out.clear();
  return out + tail;
}

SensitivityRules::SensitivityRules(const std::vector<std::string>& sensitive,
                                   const std::vector<std::string>& shareable,
                                   const std::string& base_dir) {
  // Each rule as written and with symlinks resolved: a folder reached through a link (or a
  // link into a sensitive folder) is the same data.
  auto add = [&](std::vector<std::string>& to, const std::string& rule) {
    std::string n = normalize(rule, base_dir);
    to.push_back(n);
    std::string r = resolved(n);
    if (r != n) to.push_back(r);
  };
  for (const auto& r : sensitive) add(sensitive_, r);
  for (const auto& r : shareable) add(shareable_, r);
}

Result<bool> SensitivityRules::check_upload(const std::string& local_path,
                                            const std::string& dest) const {
  if (sensitive_.empty()) return true;
  std::string path = normalize(local_path, ".");
  std::string real = resolved(path);
  // Refused when either form of the path is sensitive without a shareable rule for that form.
  for (const std::string& form : {path, real}) {
    for (const auto& rule : sensitive_) {
      if (!covers(rule, form)) continue;
      bool shareable = false;
      for (const auto& ok : shareable_) shareable = shareable || covers(ok, form);
      if (shareable) break;
      g_refused.fetch_add(1, std::memory_order_relaxed);
      return Error{Errc::kInvalidInput,
                   fmt::format("refused: {} is sensitive (storage.sensitive: {}) and stays local; "
                               "it was not uploaded to {}. Mark it in storage.shareable if it may "
                               "leave (aggregated, anonymised results only)",
                               form == path ? path : fmt::format("{} (that is {})", path, form),
                               rule, dest)};
    }
  }
  return true;
}

std::uint64_t refused_uploads() { return g_refused.load(std::memory_order_relaxed); }

}  // namespace hylab::storage
