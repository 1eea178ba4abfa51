// The control plane's REST API (docs/api.md): job submission with placement, listing,
// logs (also followed), cancel, dry-run placement, inventory, health and metrics. Every
// route but /healthz needs the bearer token, compared in constant time. Turns HTTP
// requests into calls on the Store and the Executor. Event-loop thread only.
#pragma once

#include <string>

#include "common/config.h"
#include "exec/executor.h"
#include "server/http_server.h"
#include "store/store.h"
#include "telemetry/metrics.h"

namespace hylab::server {

class Api {
 public:
  Api(const Config& cfg, store::Store& store, exec::Executor& executor, std::string token);
  HttpResponse handle(const HttpRequest& req);
  void set_url(std::string url) { url_ = std::move(url); }

 private:
  HttpResponse route(const HttpRequest& req, std::string& route_label);
  HttpResponse submit(const HttpRequest& req);
  HttpResponse place(const HttpRequest& req);
  HttpResponse list(const HttpRequest& req);
  HttpResponse get(std::int64_t id);
  HttpResponse logs(std::int64_t id, const HttpRequest& req);
  HttpResponse cancel(std::int64_t id);
  HttpResponse inventory();
  HttpResponse status();
  HttpResponse metrics();
  HttpResponse cost(const HttpRequest& req);

  const Config& cfg_;
  store::Store& store_;
  exec::Executor& executor_;
  std::string token_;
  std::string url_;
  double started_at_;
  telemetry::ServerMetrics metrics_;
};

// 64 hex characters from the system's CSPRNG.
std::string generate_token();
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace hylab::server
