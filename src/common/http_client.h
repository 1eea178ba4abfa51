// A small HTTP/1.1 client (Boost.Beast, plain or TLS with certificate verification) for
// hylab's own CLI talking to its servers. Every read has a timeout and every body a size
// limit. Blocking calls; any thread (each call has its own event loop).
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"

namespace hylab {

struct HttpClientRequest {
  std::string method = "GET";
  std::string url;  // http://host:port/path?query or https://...
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  double timeout_seconds = 30;  // connect, and each read or write
  std::size_t max_body_bytes = 64 << 20;
  std::string ca_file;  // extra CA for https (else the system's)
};

struct HttpClientResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

// Errc::kNotFound when nothing listens at the URL ("connection refused"), kIo otherwise.
Result<HttpClientResponse> http_request(const HttpClientRequest& req);

// Streams the body to `on_data` as it arrives (chunked responses), until the server
// ends it or on_data returns false. The timeout applies between pieces. Returns the
// response with an empty body.
Result<HttpClientResponse> http_stream(const HttpClientRequest& req,
                                       const std::function<bool(std::string_view)>& on_data);

}  // namespace hylab
