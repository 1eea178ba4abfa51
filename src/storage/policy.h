// What never leaves the lab: the storage section's `sensitive` paths and globs (a folder
// marks everything under it) and the `shareable` exceptions inside them (the guide's
// aggregated, anonymised results). Every upload in this module asks check_upload() first,
// so the rule holds for every caller, not only the CLI; refusals are counted. Immutable
// after construction: any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"

namespace hylab::storage {

class SensitivityRules {
 public:
  SensitivityRules() = default;
  // Relative entries are resolved against `base_dir` (the config file's folder).
  SensitivityRules(const std::vector<std::string>& sensitive,
                   const std::vector<std::string>& shareable, const std::string& base_dir);

  // An error naming the rule when `local_path` (any form) is sensitive and not shareable.
  Result<bool> check_upload(const std::string& local_path, const std::string& dest) const;
  bool empty() const { return sensitive_.empty(); }

 private:
  std::vector<std::string> sensitive_, shareable_;  // absolute, normalized
};

// Uploads refused by the rules in this process.
std::uint64_t refused_uploads();

// '*' and '?' within a path segment, "**" across segments.
bool path_glob_match(std::string_view pattern, std::string_view path);

}  // namespace hylab::storage
