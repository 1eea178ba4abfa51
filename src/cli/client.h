// The CLI's side of the control plane's API: finds the server (--url, $HYLAB_URL, the
// running server's STATE_DIR/server.json, the config's server.listen) and its token
// ($HYLAB_TOKEN, STATE_DIR/token), and runs the client subcommands: run, jobs, logs,
// cancel, status, cost report.
#pragma once

#include <optional>
#include <ostream>
#include <string>

#include "common/config.h"

namespace hylab::cli {

struct ClientOptions {
  std::optional<std::string> url;
  bool json = false;
};

struct RunOptions {
  std::string file;
  bool follow = false;
  int priority = 0;
};
struct JobsOptions {
  std::optional<std::string> state;
  std::optional<std::string> environment;
  int limit = 50;
  bool all = false;
};

int cmd_run(const Config& cfg, const ClientOptions& c, const RunOptions& r, std::ostream& out,
            std::ostream& err);
int cmd_jobs(const Config& cfg, const ClientOptions& c, const JobsOptions& j, std::ostream& out,
             std::ostream& err);
int cmd_logs(const Config& cfg, const ClientOptions& c, const std::string& id, bool follow,
             std::ostream& out, std::ostream& err);
int cmd_cancel(const Config& cfg, const ClientOptions& c, const std::string& id, std::ostream& out,
               std::ostream& err);
int cmd_status(const Config& cfg, const ClientOptions& c, std::ostream& out, std::ostream& err);
// `hylab cost report [--since DATE|7d]`: spend by day, environment and job.
int cmd_cost_report(const Config& cfg, const ClientOptions& c, const std::string& since,
                    std::ostream& out, std::ostream& err);
// `hylab gateway stats`: the gateway's /metrics as a table (or JSON).
int cmd_gateway_stats(const Config& cfg, const std::optional<std::string>& admin, bool json,
                      std::ostream& out, std::ostream& err);

}  // namespace hylab::cli
