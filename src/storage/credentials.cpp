// The AWS credentials chain hylab supports (see credentials.h): environment variables, then
// static keys in the shared credentials file. Parses the file the way botocore's
// configparser does where it matters (case-insensitive keys, whole-line comments only,
// repeated sections and keys are errors) and never quotes a line back, since any line of
// that file may hold a secret.
#include "storage/credentials.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <sstream>
#include <string_view>

namespace hylab::storage {
namespace {

constexpr std::string_view kAccessKeyId = "aws_access_key_id";
constexpr std::string_view kSecretAccessKey = "aws_secret_access_key";
constexpr std::string_view kSessionToken = "aws_session_token";

std::string_view trim(std::string_view s) {
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// Set and non-empty: an exported but empty variable counts as unset, as in botocore.
std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  return std::string(v);
}

Error at(const std::string& file, std::size_t line, const std::string& what) {
  return invalid_input(file + ":" + std::to_string(line) + ": " + what);
}

}  // namespace

Result<Credentials> parse_credentials_file(const std::string& text, const std::string& file,
                                           const std::string& profile) {
  std::map<std::string, std::size_t> section_lines;
  std::map<std::string, std::size_t> key_lines;  // of the wanted profile
  bool in_section = false;
  bool in_wanted = false;
  bool unsupported = false;  // the profile gets its keys some way hylab does not implement
  Credentials creds;
  std::istringstream in(text);
  std::string raw;
  for (std::size_t n = 1; std::getline(in, raw); ++n) {
    std::string_view line = trim(raw);
    if (line.empty() || line.front() == '#' || line.front() == ';') continue;
    if (line.front() == '[') {
      if (line.back() != ']') return at(file, n, "a section header must end with ']'");
      std::string name(trim(line.substr(1, line.size() - 2)));
      if (name.empty()) return at(file, n, "empty section name '[]'");
      auto [it, inserted] = section_lines.try_emplace(name, n);
      if (!inserted) {
        return at(file, n,
                  "profile '" + name + "' appears twice (first on line " +
                      std::to_string(it->second) + ")");
      }
      in_section = true;
      in_wanted = name == profile;
      continue;
    }
    std::size_t eq = line.find('=');
    // The line itself is never shown: a secret pasted on a line of its own ends up here.
    if (eq == std::string_view::npos) {
      return at(file, n, "expected '[profile]' or 'key = value' (the line is not shown)");
    }
    std::string key = lower(trim(line.substr(0, eq)));
    std::string value(trim(line.substr(eq + 1)));
    if (key.empty()) return at(file, n, "a setting needs a name before '='");
    if (!in_section) return at(file, n, "a setting before the first [profile] section");
    if (!in_wanted) continue;
    std::string* field = key == kAccessKeyId       ? &creds.access_key_id
                         : key == kSecretAccessKey ? &creds.secret_access_key
                         : key == kSessionToken    ? &creds.session_token
                                                   : nullptr;
    if (field == nullptr) {
      unsupported = unsupported || key == "credential_process" || key == "role_arn" ||
                    key == "source_profile" || key.starts_with("sso_");
      continue;
    }
    auto [it, inserted] = key_lines.try_emplace(key, n);
    if (!inserted) {
      return at(file, n,
                key + " is set twice in profile '" + profile + "' (first on line " +
                    std::to_string(it->second) + ")");
    }
    *field = std::move(value);
  }
  auto section = section_lines.find(profile);
  if (section == section_lines.end()) {
    return Error{Errc::kNotFound, "profile '" + profile + "' is not in " + file};
  }
  std::string missing;
  if (creds.access_key_id.empty()) missing = std::string(kAccessKeyId);
  if (creds.secret_access_key.empty()) {
    missing += (missing.empty() ? "" : " and ") + std::string(kSecretAccessKey);
  }
  if (!missing.empty()) {
    std::string what = "profile '" + profile + "' has no " + missing;
    if (unsupported) {
      what += " (hylab reads static keys only, not credential_process, role or SSO profiles)";
    }
    return at(file, section->second, what);
  }
  return creds;
}

Result<Credentials> load_credentials(const std::string& profile) {
  // As in botocore, a profile the caller names outranks the environment's keys; AWS_PROFILE
  // does not.
  bool named = !profile.empty();
  if (!named) {
    auto id = env("AWS_ACCESS_KEY_ID");
    auto secret = env("AWS_SECRET_ACCESS_KEY");
    if (id && secret) {
      return Credentials{*id, *secret, env("AWS_SESSION_TOKEN").value_or("")};
    }
    if (id || secret) {
      return invalid_input(std::string(id ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY") +
                           " is set but " + (id ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID") +
                           " is not; set both, or neither to use the credentials file");
    }
  }
  std::string name = named ? profile : env("AWS_PROFILE").value_or("default");
  std::string prefix =
      named ? "no credentials: " : "no credentials: AWS_ACCESS_KEY_ID is not set and ";

  std::string file;
  if (auto f = env("AWS_SHARED_CREDENTIALS_FILE")) {
    file = *f;
    if (file.starts_with("~/")) {
      auto home = env("HOME");
      if (!home)
        return invalid_input("AWS_SHARED_CREDENTIALS_FILE starts with ~ but HOME is not set");
      file = *home + file.substr(1);
    }
  } else if (auto home = env("HOME")) {
    file = *home + "/.aws/credentials";
  } else {
    return Error{Errc::kNotFound, prefix + "HOME is not set, so there is no ~/.aws/credentials"};
  }

  std::error_code ec;
  if (!std::filesystem::exists(file, ec) && !ec) {
    return Error{Errc::kNotFound, prefix + file + " does not exist"};
  }
  if (std::filesystem::is_directory(file, ec)) {
    return Error{Errc::kIo, "cannot read " + file + ": it is a directory"};
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) return Error{Errc::kIo, "cannot read " + file + ": " + std::strerror(errno)};
  std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (in.bad()) return Error{Errc::kIo, "cannot read " + file + ": " + std::strerror(errno)};
  auto creds = parse_credentials_file(text, file, name);
  if (!creds && creds.error().code == Errc::kNotFound) {
    return Error{Errc::kNotFound, prefix + creds.error().message};
  }
  return creds;
}

}  // namespace hylab::storage
