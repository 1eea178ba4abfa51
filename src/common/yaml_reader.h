// Strict reading of YAML documents into typed values. Every problem becomes a
// Diagnostic with file:line:column and the dotted key; unknown keys get a "did you
// mean" from the keys the reader knows; duplicate keys are errors. Internal to common/
// (config and job-spec loaders); keeps yaml-cpp out of other modules' headers.
// Not thread-safe: one reader per document.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/diagnostics.h"

namespace hylab::yaml {

// Documents larger than this are refused before parsing.
inline constexpr std::size_t kMaxDocumentBytes = 1 << 20;

// Parses one document. Returns nothing (and records an error) on a syntax error, an
// oversized or too deeply nested document. An empty document yields a Null node.
std::optional<YAML::Node> parse(std::string_view text, const std::string& file, Diagnostics& d);

struct Where {
  const std::string& file;
  Diagnostics& diag;
};

void error_at(const Where& w, const YAML::Node& at, std::string_view key, std::string message);
void warning_at(const Where& w, const YAML::Node& at, std::string_view key, std::string message);
std::string_view type_name(const YAML::Node& n);

// Typed conversions of one value node (a map value or a list element). On failure they
// record an error naming `key` and return nothing.
std::optional<std::string> as_string(const Where& w, const YAML::Node& n, std::string_view key);
std::optional<double> as_number(const Where& w, const YAML::Node& n, std::string_view key);
std::optional<bool> as_bool(const Where& w, const YAML::Node& n, std::string_view key);
std::optional<std::uint64_t> as_bytes(const Where& w, const YAML::Node& n, std::string_view key,
                                      std::uint64_t bare_unit);
std::optional<double> as_hours(const Where& w, const YAML::Node& n, std::string_view key);
std::optional<std::string> as_choice(const Where& w, const YAML::Node& n, std::string_view key,
                                     std::initializer_list<std::string_view> options);
std::optional<std::vector<std::string>> as_string_list(const Where& w, const YAML::Node& n,
                                                       std::string_view key);
// A mapping of names to scalar values (numbers and booleans become their text; null is
// kept as an empty optional, as SkyPilot allows for envs set at launch).
std::optional<std::map<std::string, std::optional<std::string>>> as_string_map(
    const Where& w, const YAML::Node& n, std::string_view key);

// Calls `each(item, "path[i]")` for every element of a list; a null node is an empty list,
// anything else records "expected a list of WHAT".
void for_each_item(const Where& w, const YAML::Node& node, const std::string& path,
                   std::string_view what,
                   const std::function<void(const YAML::Node&, const std::string&)>& each);

// Reads one mapping. take() marks a key known and returns its value; finish() reports
// every key never taken as unknown, with the closest known key as a suggestion.
class MapReader {
 public:
  // `path` is the dotted path of this mapping ("" at the top level).
  MapReader(const Where& w, const YAML::Node& node, std::string path);

  bool ok() const { return ok_; }
  const YAML::Node& node() const { return node_; }
  std::string key_path(std::string_view key) const;

  std::optional<YAML::Node> take(std::string_view key);
  // Accepts the keys (so they are not unknown), each present one with a warning at its own
  // line and column: "KEY: not acted on: MEANING".
  struct Ignored {
    std::string_view key;
    std::string_view meaning;  // what ignoring it means for the user
  };
  void accept_with_warning(std::initializer_list<Ignored> keys);
  // Declares keys that are known but read elsewhere (for suggestions only).
  void known(std::initializer_list<std::string_view> keys);
  void finish();

  std::optional<std::string> string(std::string_view key);
  // min: inclusive lower bound unless `exclusive`.
  std::optional<double> number(std::string_view key, double min, bool exclusive = false);
  // Whole numbers in [min, max] (max: what an int holds, where every caller keeps them).
  std::optional<long long> integer(std::string_view key, long long min,
                                   long long max = std::numeric_limits<int>::max());
  std::optional<bool> boolean(std::string_view key);
  std::optional<std::uint64_t> bytes(std::string_view key, std::uint64_t bare_unit);
  std::optional<double> hours(std::string_view key);
  std::optional<std::string> choice(std::string_view key,
                                    std::initializer_list<std::string_view> options);
  std::optional<std::vector<std::string>> string_list(std::string_view key);

  const Where& where() const { return w_; }

 private:
  Where w_;
  YAML::Node node_;
  std::string path_;
  bool ok_ = false;
  std::vector<std::string> known_;
  std::vector<std::string> taken_;
};

}  // namespace hylab::yaml
