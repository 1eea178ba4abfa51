// Reads one connection's bytes with hylab's RequestReader the way a server does: parse,
// take each finished request, reset, go on with the bytes past it, stop at an error or at a
// request after which the connection is not kept alive. Shared by the tests that hold the
// reader against a peer parser (llhttp's corpus, Node's server).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "common/http1.h"

namespace hylab::http1::testing {

struct Message {
  std::size_t end = 0;  // offset in the connection's bytes just past the request
  std::string method;
  std::string target;
  std::string body;
  bool keep_alive = true;
  int version = 11;
};

enum class End {
  kIdle,        // the bytes ended between requests
  kIncomplete,  // the bytes ended inside a request (the reader waits for more)
  kFailed,      // the reader refused a request: the connection is closed
  kClosed,      // a request said the connection ends after it: the rest is not read
};

struct Outcome {
  std::vector<Message> messages;
  End end = End::kIdle;
  int status = 0;  // of the error, when kFailed
  std::string reason;
  std::size_t error_offset = 0;  // bytes used when the reader failed
  bool eof_failed = false;       // with call_eof: eof() in the middle of a request failed it
};

// step: how many bytes each parse() call is offered (0: everything that is left).
inline Outcome read_connection(std::string_view wire, std::size_t step = 0, bool call_eof = false,
                               Limits limits = {}) {
  Outcome out;
  RequestReader r(limits);
  std::size_t pos = 0;
  while (true) {
    if (pos == wire.size()) {
      out.end = r.started() ? End::kIncomplete : End::kIdle;
      if (call_eof) {
        r.eof();
        out.eof_failed = r.failed();
      }
      return out;
    }
    std::string_view chunk = wire.substr(pos, step == 0 ? std::string_view::npos : step);
    std::size_t used = r.parse(chunk);
    pos += used;
    if (r.failed()) {
      out.end = End::kFailed;
      out.status = r.error().status;
      out.reason = r.error().reason;
      out.error_offset = pos;
      return out;
    }
    if (r.done()) {
      out.messages.push_back({pos, std::string(r.method()), std::string(r.target()), r.body(),
                              r.keep_alive(), r.version()});
      if (!r.keep_alive()) {
        out.end = End::kClosed;
        return out;
      }
      r.reset();
    } else if (used < chunk.size()) {
      // parse() stops early only at the end of a request or an error.
      out.end = End::kFailed;
      out.status = -1;
      out.reason = "parse() used part of its input without finishing a request";
      return out;
    }
  }
}

inline const char* end_name(End e) {
  switch (e) {
    case End::kIdle:
      return "idle";
    case End::kIncomplete:
      return "incomplete";
    case End::kFailed:
      return "failed";
    case End::kClosed:
      return "closed";
  }
  return "?";
}

// Whether reading in small steps frames the bytes exactly as reading them whole does.
inline bool same_outcome(const Outcome& a, const Outcome& b) {
  if (a.messages.size() != b.messages.size() || a.end != b.end || a.status != b.status ||
      a.eof_failed != b.eof_failed)
    return false;
  for (std::size_t i = 0; i < a.messages.size(); ++i) {
    const auto& x = a.messages[i];
    const auto& y = b.messages[i];
    if (x.end != y.end || x.method != y.method || x.target != y.target || x.body != y.body ||
        x.keep_alive != y.keep_alive)
      return false;
  }
  return true;
}

// The deliberate differences from llhttp (docs/http.md): hylab refuses what llhttp's strict
// mode accepts, on purpose, for these reasons only. A refusal is put in a class by hylab's
// answer (status and reason); nothing else may be refused where the peer accepts.
struct DeliberateClass {
  const char* name;
  int status;
  const char* reason_prefix;  // of RequestReader's error().reason
};
inline constexpr DeliberateClass kDeliberateClasses[] = {
    {"method outside hylab's set (501)", 501, "method "},
    {"transfer coding other than chunked (501)", 501, "a transfer coding other than chunked"},
    {"HTTP version other than 1.0/1.1 (505)", 505, "HTTP version "},
    {"protocol other than HTTP, or no version (400)", 400, "a malformed HTTP version"},
    {"request line other than method SP target SP version (400)", 400, "a malformed request line"},
    {"fragment or non-URL byte in the target (400)", 400,
     "an invalid character in the request target"},
    {"target neither a path nor an http(s) URL (400)", 400, "a request target that is neither"},
    {"Host missing or repeated (400)", 400, "an HTTP/1.1 request without Host"},
    {"Host missing or repeated (400)", 400, "more than one Host"},
    {"expectation other than 100-continue (417)", 417, "expectation "},
    {"tab in a Content-Length or Transfer-Encoding value (400)", 400, "a tab after the start"},
    {"Transfer-Encoding coding not a token (400)", 400,
     "a Transfer-Encoding coding that is not a token"},
    {"chunk extension with an empty name or value (400)", 400, "an empty chunk extension "},
    {"empty element in Transfer-Encoding (400)", 400, "an empty element in Transfer-Encoding"},
    {"bare LF or CR before a request line (400)", 400, "a bare LF before the request line"},
    {"bare LF or CR before a request line (400)", 400,
     "a CR not followed by LF before the request line"},
    {"head, chunk extensions and trailers over 16 KiB together (431)", 431,
     "request head, chunk extensions and trailers over the limit"},
};

// The class of a refusal, or nullptr where it is in none.
inline const char* deliberate_class(int status, std::string_view reason) {
  for (const auto& c : kDeliberateClasses) {
    if (c.status == status && reason.starts_with(c.reason_prefix)) return c.name;
  }
  return nullptr;
}

}  // namespace hylab::http1::testing
