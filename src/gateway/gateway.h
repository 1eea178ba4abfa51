// `hylab gateway`: the inference data plane. An HTTP/1.1 reverse proxy with one event
// loop per thread (SO_REUSEPORT listeners), keep-alive upstream pools per thread, and
// the hybrid policy: the least-loaded local endpoint with a free slot first; overflow to
// the cloud when every local slot is taken; failover to the cloud when local endpoints
// are down; requests marked sensitive never go to the cloud. Runs without `hylab serve`.
// Thread-safety: endpoint counters are atomics shared by the loops; nothing on the
// request path takes a lock.
#pragma once

#include <optional>
#include <ostream>
#include <string>

#include "common/config.h"

namespace hylab::gateway {

struct GatewayOptions {
  std::optional<std::string> port_file;  // written with {"listen": PORT, "admin": PORT} once ready
};

// Runs until SIGTERM/SIGINT; returns the process exit code.
int run_gateway(const Config& cfg, const GatewayOptions& opts, std::ostream& out,
                std::ostream& err);

}  // namespace hylab::gateway
