// `hylab serve`: the control plane's process. Opens the state (database, token, job
// directories) under the state directory, holds a lock so only one server uses it,
// adopts jobs that outlived a previous server, serves the API until SIGTERM/SIGINT, and
// leaves running jobs to be adopted at the next start.
#pragma once

#include <optional>
#include <ostream>
#include <string>

#include "common/config.h"

namespace hylab::server {

struct ServeOptions {
  std::optional<std::string> listen;  // overrides server.listen
  bool use_nvml = true;
  std::string exe = "hylab";  // how the user ran hylab, for the hint it prints
};

// Runs until a signal; returns the process exit code.
int run_serve(const Config& cfg, const ServeOptions& opts, std::ostream& out, std::ostream& err);

// Files a client reads to find the server.
std::string token_path(const std::string& state_dir);
std::string server_info_path(const std::string& state_dir);

}  // namespace hylab::server
