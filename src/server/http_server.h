// A small HTTP/1.1 server (Asio, C++20 coroutines, optional TLS) for the control plane's API.
// Requests are read by the strict reader (common/http1.h, the gateway's too) and handed to
// one Handler on the event-loop thread; Beast writes the answers and stays inside
// http_server.cpp. Limits: header and body sizes, read/write/idle timeouts, open
// connections (past max_connections the longest-idle one is closed, common/connection_table.h);
// refused requests get 400/413/417/431/501/505 with a JSON reason and the connection closes.
// stop() closes the listener and every open connection. Event-loop thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"

namespace boost::asio {
class io_context;
}

namespace hylab::server {

struct HttpRequest {
  std::string method;
  std::string target;  // as sent: path and query
  std::string path;    // decoded path
  std::map<std::string, std::string> query;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;

  std::string header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  // Set for a streamed (chunked) body: called until it returns nothing; an empty string
  // means "no data yet", and the server asks again shortly.
  std::function<std::optional<std::string>()> stream;
};

using Handler = std::function<HttpResponse(const HttpRequest&)>;

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 7460;  // 0: any free port
  std::string tls_cert;       // both set: HTTPS
  std::string tls_key;
  std::size_t max_header_bytes = 16UL * 1024;
  std::size_t max_body_bytes = 1 << 20;
  double read_timeout_seconds = 30;
  double write_timeout_seconds = 30;
  double idle_timeout_seconds = 120;
  double stream_poll_seconds = 0.05;
  std::size_t max_connections = 1024;
};

class HttpServer {
 public:
  HttpServer(boost::asio::io_context& ioc, HttpServerOptions opts, Handler handler);
  ~HttpServer();
  // Binds and starts accepting; returns the bound port.
  Result<std::uint16_t> start();
  void stop();

 private:
  class Impl;
  std::shared_ptr<Impl> impl_;
};

// "a%20b" -> "a b"; nothing on a malformed escape.
std::optional<std::string> url_decode(std::string_view s);

}  // namespace hylab::server
