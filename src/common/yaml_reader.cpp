#include "common/yaml_reader.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "common/text.h"
#include "common/units.h"

namespace hylab::yaml {

namespace {

// yaml-cpp recurses once per nesting level; its own guard (depth 2000) is deeper than a
// sanitizer build's stack allows. No hylab file needs more than a handful of levels.
constexpr int kMaxFlowDepth = 64;
constexpr std::size_t kMaxIndent = 256;

std::optional<std::string> structure_problem(std::string_view text) {
  int depth = 0;
  std::size_t indent = 0;
  bool at_line_start = true;
  for (char c : text) {
    if (c == '\0') return "the file contains a NUL byte (is it a text file?)";
    if (c == '\n') {
      at_line_start = true;
      indent = 0;
      continue;
    }
    if (at_line_start && (c == ' ' || c == '-' || c == '\t')) {
      if (++indent > kMaxIndent) return fmt::format("nesting deeper than {} columns", kMaxIndent);
      continue;
    }
    at_line_start = false;
    if (c == '[' || c == '{') {
      if (++depth > kMaxFlowDepth)
        return fmt::format("nesting deeper than {} levels", kMaxFlowDepth);
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return std::nullopt;
}

int line_of(const YAML::Node& n) { return n.Mark().is_null() ? 0 : n.Mark().line + 1; }
int column_of(const YAML::Node& n) { return n.Mark().is_null() ? 0 : n.Mark().column + 1; }

// Plain (unquoted) scalars carry the non-specific tag "?"; quoted ones "!".
bool is_plain(const YAML::Node& n) { return n.Tag() == "?"; }

}  // namespace

std::optional<YAML::Node> parse(std::string_view text, const std::string& file, Diagnostics& d) {
  if (text.size() > kMaxDocumentBytes) {
    d.error(file, 0, 0, "",
            fmt::format("file is {} bytes, over the limit of {} bytes", text.size(),
                        kMaxDocumentBytes));
    return std::nullopt;
  }
  if (auto problem = structure_problem(text)) {
    d.error(file, 0, 0, "", *problem);
    return std::nullopt;
  }
  try {
    return YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    d.error(file, e.mark.is_null() ? 0 : e.mark.line + 1, e.mark.is_null() ? 0 : e.mark.column + 1,
            "", "invalid YAML: " + e.msg);
  }
  return std::nullopt;
}

void error_at(const Where& w, const YAML::Node& at, std::string_view key, std::string message) {
  w.diag.error(w.file, line_of(at), column_of(at), std::string(key), std::move(message));
}

void warning_at(const Where& w, const YAML::Node& at, std::string_view key, std::string message) {
  w.diag.warning(w.file, line_of(at), column_of(at), std::string(key), std::move(message));
}

std::string_view type_name(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
      return "nothing (null)";
    case YAML::NodeType::Scalar:
      return "a scalar";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Undefined:
      break;
  }
  return "nothing";
}

namespace {
std::optional<std::string> scalar(const Where& w, const YAML::Node& n, std::string_view key,
                                  std::string_view expected) {
  if (!n.IsScalar()) {
    error_at(w, n, key, fmt::format("expected {}, got {}", expected, type_name(n)));
    return std::nullopt;
  }
  return n.Scalar();
}
}  // namespace

std::optional<std::string> as_string(const Where& w, const YAML::Node& n, std::string_view key) {
  return scalar(w, n, key, "a string");
}

std::optional<double> as_number(const Where& w, const YAML::Node& n, std::string_view key) {
  auto s = scalar(w, n, key, "a number");
  if (!s) return std::nullopt;
  auto v = parse_number(*s);
  if (!v || !is_plain(n)) {
    error_at(
        w, n, key,
        v ? fmt::format("expected a number, got the string {}", quote(*s)) : v.error().message);
    return std::nullopt;
  }
  return *v;
}

std::optional<bool> as_bool(const Where& w, const YAML::Node& n, std::string_view key) {
  auto s = scalar(w, n, key, "true or false");
  if (!s) return std::nullopt;
  std::string v = to_lower(*s);
  if (is_plain(n)) {
    if (v == "true" || v == "yes" || v == "on") return true;
    if (v == "false" || v == "no" || v == "off") return false;
  }
  error_at(w, n, key, fmt::format("expected true or false, got {}", quote(*s)));
  return std::nullopt;
}

std::optional<std::uint64_t> as_bytes(const Where& w, const YAML::Node& n, std::string_view key,
                                      std::uint64_t bare_unit) {
  auto s = scalar(w, n, key, "a size such as 250GB");
  if (!s) return std::nullopt;
  auto v = parse_bytes(*s, bare_unit);
  if (!v) {
    error_at(w, n, key, v.error().message);
    return std::nullopt;
  }
  return *v;
}

std::optional<double> as_hours(const Where& w, const YAML::Node& n, std::string_view key) {
  auto s = scalar(w, n, key, "a duration such as 4h");
  if (!s) return std::nullopt;
  auto v = parse_duration_hours(*s);
  if (!v) {
    error_at(w, n, key, v.error().message);
    return std::nullopt;
  }
  return *v;
}

std::optional<std::string> as_choice(const Where& w, const YAML::Node& n, std::string_view key,
                                     std::initializer_list<std::string_view> options) {
  std::vector<std::string> names(options.begin(), options.end());
  auto s = scalar(w, n, key, "one of " + join(names, ", "));
  if (!s) return std::nullopt;
  for (auto o : options) {
    if (*s == o) return *s;
  }
  std::string msg =
      fmt::format("unknown value {}; expected one of {}", quote(*s), join(names, ", "));
  if (auto near = did_you_mean(*s, names)) msg += fmt::format(" (did you mean '{}'?)", *near);
  error_at(w, n, key, std::move(msg));
  return std::nullopt;
}

std::optional<std::vector<std::string>> as_string_list(const Where& w, const YAML::Node& n,
                                                       std::string_view key) {
  if (n.IsScalar()) return std::vector<std::string>{n.Scalar()};
  if (!n.IsSequence()) {
    error_at(w, n, key, fmt::format("expected a list of strings, got {}", type_name(n)));
    return std::nullopt;
  }
  std::vector<std::string> out;
  bool ok = true;
  std::size_t i = 0;
  for (const auto& item : n) {
    auto s = as_string(w, item, fmt::format("{}[{}]", key, i++));
    if (s) {
      out.push_back(*s);
    } else {
      ok = false;
    }
  }
  if (!ok) return std::nullopt;
  return out;
}

std::optional<std::map<std::string, std::optional<std::string>>> as_string_map(
    const Where& w, const YAML::Node& n, std::string_view key) {
  if (n.IsNull()) return std::map<std::string, std::optional<std::string>>{};
  if (!n.IsMap()) {
    error_at(w, n, key, fmt::format("expected a mapping of names to values, got {}", type_name(n)));
    return std::nullopt;
  }
  std::map<std::string, std::optional<std::string>> out;
  bool ok = true;
  for (const auto& kv : n) {
    auto name = as_string(w, kv.first, key);
    if (!name) {
      ok = false;
      continue;
    }
    std::string sub = fmt::format("{}.{}", key, *name);
    if (out.count(*name)) {
      error_at(w, kv.first, sub, "duplicate key");
      ok = false;
      continue;
    }
    if (kv.second.IsNull()) {
      out[*name] = std::nullopt;
    } else if (auto v = as_string(w, kv.second, sub)) {
      out[*name] = *v;
    } else {
      ok = false;
    }
  }
  if (!ok) return std::nullopt;
  return out;
}

void for_each_item(const Where& w, const YAML::Node& node, const std::string& path,
                   std::string_view what,
                   const std::function<void(const YAML::Node&, const std::string&)>& each) {
  if (node.IsNull()) return;
  if (!node.IsSequence()) {
    error_at(w, node, path, fmt::format("expected a list of {}, got {}", what, type_name(node)));
    return;
  }
  std::size_t i = 0;
  for (const auto& item : node) each(item, fmt::format("{}[{}]", path, i++));
}

MapReader::MapReader(const Where& w, const YAML::Node& node, std::string path)
    : w_(w), node_(node), path_(std::move(path)) {
  if (node_.IsNull()) {
    ok_ = true;  // an empty section is an empty mapping
    return;
  }
  if (!node_.IsMap()) {
    error_at(w_, node_, path_.empty() ? "(top level)" : path_,
             fmt::format("expected a mapping, got {}", type_name(node_)));
    return;
  }
  ok_ = true;
  std::vector<std::string> seen;
  for (const auto& kv : node_) {
    if (!kv.first.IsScalar()) {
      error_at(w_, kv.first, path_,
               fmt::format("a key must be a name, got {}", type_name(kv.first)));
      ok_ = false;
      continue;
    }
    const std::string& k = kv.first.Scalar();
    if (std::find(seen.begin(), seen.end(), k) != seen.end()) {
      error_at(w_, kv.first, key_path(k), "duplicate key (the later value would silently win)");
      ok_ = false;
    }
    seen.push_back(k);
  }
}

std::string MapReader::key_path(std::string_view key) const {
  return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
}

std::optional<YAML::Node> MapReader::take(std::string_view key) {
  known_.emplace_back(key);
  if (!node_.IsMap()) return std::nullopt;
  for (const auto& kv : node_) {
    if (kv.first.IsScalar() && kv.first.Scalar() == key) {
      taken_.emplace_back(key);
      return kv.second;
    }
  }
  return std::nullopt;
}

void MapReader::known(std::initializer_list<std::string_view> keys) {
  for (auto k : keys) known_.emplace_back(k);
}

void MapReader::accept_with_warning(std::initializer_list<Ignored> keys) {
  for (const auto& k : keys) {
    if (!take(k.key)) continue;
    for (const auto& kv : node_) {
      if (kv.first.IsScalar() && kv.first.Scalar() == k.key) {
        warning_at(w_, kv.first, key_path(k.key), fmt::format("not acted on: {}", k.meaning));
        break;
      }
    }
  }
}

void MapReader::finish() {
  if (!node_.IsMap()) return;
  for (const auto& kv : node_) {
    if (!kv.first.IsScalar()) continue;
    const std::string& k = kv.first.Scalar();
    if (std::find(taken_.begin(), taken_.end(), k) != taken_.end()) continue;
    std::string msg = "unknown key";
    if (auto near = did_you_mean(k, known_)) {
      msg += fmt::format(" (did you mean '{}'?)", *near);
    } else if (!known_.empty()) {
      auto sorted = known_;
      std::sort(sorted.begin(), sorted.end());
      sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
      msg += "; known keys here: " + join(sorted, ", ");
    }
    error_at(w_, kv.first, key_path(k), std::move(msg));
  }
}

std::optional<std::string> MapReader::string(std::string_view key) {
  auto n = take(key);
  if (!n || n->IsNull()) return std::nullopt;
  return as_string(w_, *n, key_path(key));
}

std::optional<double> MapReader::number(std::string_view key, double min, bool exclusive) {
  auto n = take(key);
  if (!n || n->IsNull()) return std::nullopt;
  auto v = as_number(w_, *n, key_path(key));
  if (!v) return std::nullopt;
  if (exclusive ? !(*v > min) : !(*v >= min)) {
    error_at(
        w_, *n, key_path(key),
        fmt::format("must be {} {:g}, got {:g}", exclusive ? "greater than" : "at least", min, *v));
    return std::nullopt;
  }
  return v;
}

std::optional<long long> MapReader::integer(std::string_view key, long long min, long long max) {
  auto n = take(key);
  if (!n || n->IsNull()) return std::nullopt;
  auto v = as_number(w_, *n, key_path(key));
  if (!v) return std::nullopt;
  if (!(std::fabs(*v) <= 1e15) || *v != std::trunc(*v)) {  // (range first: then it casts)
    error_at(w_, *n, key_path(key), fmt::format("expected a whole number, got {}", n->Scalar()));
    return std::nullopt;
  }
  if (*v < static_cast<double>(min)) {
    error_at(w_, *n, key_path(key), fmt::format("must be at least {}, got {:g}", min, *v));
    return std::nullopt;
  }
  if (*v > static_cast<double>(max)) {
    error_at(w_, *n, key_path(key), fmt::format("must be at most {}, got {}", max, n->Scalar()));
    return std::nullopt;
  }
  return static_cast<long long>(*v);
}

std::optional<bool> MapReader::boolean(std::string_view key) {
  auto n = take(key);
  if (!n || n->IsNull()) return std::nullopt;
  return as_bool(w_, *n, key_path(key));
}

std::optional<std::uint64_t> MapReader::bytes(std::string_view key, std::uint64_t bare_unit) {
  auto n = take(key);
  if (!n || n->IsNull()) return std::nullopt;
  return as_bytes(w_, *n, key_path(key), bare_unit);
}

std::optional<double> MapReader::hours(std::string_view key) {
  auto n = take(key);
  if (!n || n->IsNull()) return std::nullopt;
  return as_hours(w_, *n, key_path(key));
}

std::optional<std::string> MapReader::choice(std::string_view key,
                                             std::initializer_list<std::string_view> options) {
  auto n = take(key);
  if (!n || n->IsNull()) return std::nullopt;
  return as_choice(w_, *n, key_path(key), options);
}

std::optional<std::vector<std::string>> MapReader::string_list(std::string_view key) {
  auto n = take(key);
  if (!n || n->IsNull()) return std::nullopt;
  return as_string_list(w_, *n, key_path(key));
}

}  // namespace hylab::yaml
