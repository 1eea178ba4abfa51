// `hylab data`: get, put, ls, rm and sync between local paths and object storage (s3:// or
// file://), through the byte-bounded disk cache, and `hylab data cache stats|pin|evict|
// clear`. Progress (rate, ETA) on standard error when it is a terminal; -o json for
// scripts. One DataCommand per process run.
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "common/config.h"

namespace hylab::cli {

class DataCommand {
 public:
  void add(CLI::App& app);
  bool parsed() const;
  int run(const Config& cfg, bool json, std::ostream& out, std::ostream& err);

 private:
  CLI::App* data_ = nullptr;
  CLI::App *get_ = nullptr, *put_ = nullptr, *ls_ = nullptr, *rm_ = nullptr, *sync_ = nullptr;
  CLI::App *cache_ = nullptr, *stats_ = nullptr, *pin_ = nullptr, *unpin_ = nullptr,
           *evict_ = nullptr, *clear_ = nullptr;
  std::string a_, b_;  // positional arguments
  std::optional<std::string> endpoint_url_;
  bool delete_ = false, dry_run_ = false, recursive_ = false, no_cache_ = false, all_ = false;
  bool progress_ = false;
  std::optional<int> parallel_;
  std::string stats_format_;
};

}  // namespace hylab::cli
