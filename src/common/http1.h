// Strict HTTP/1.1 request framing (RFC 9112) for both of hylab's servers: where a request
// starts and ends, its head and its body, and nothing ambiguous let through. Both `serve`
// and the gateway read requests with it, so a request is framed the same way by each, and
// a front proxy that frames it as llhttp does cannot be made to see a different request
// (no smuggling). What it refuses, and how it differs from llhttp on purpose, is listed in
// docs/http.md; tests/differential holds the proof against Node's parser.
//
// Memory is bounded by the limits: the head (request line and fields) and every chunk
// extension and trailer together stay within max_header_bytes, the body within
// max_body_bytes, and the reader never holds bytes past the request it is reading.
// No I/O, no Beast: a caller feeds it what it read. One reader per connection, one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hylab::http1 {

struct Limits {
  std::size_t max_header_bytes = 16 * 1024;
  std::size_t max_body_bytes = 1 << 20;
  // RFC 9112 §3.2: an HTTP/1.1 request without Host is refused (400). Both servers keep it;
  // the tests that compare framing with llhttp, which does not require Host, turn it off.
  bool require_host = true;
};

// Why a request was refused, as its answer: 400 (malformed), 413 (body over the limit),
// 417 (an expectation other than 100-continue), 431 (head over the limit), 501 (a method
// or transfer coding hylab does not implement), 505 (an HTTP version other than 1.0/1.1).
// After any error the connection must be closed: its framing is lost.
struct ParseError {
  int status = 0;
  std::string reason;
};

struct FieldView {
  std::string_view name;   // as sent
  std::string_view value;  // without leading and trailing whitespace
};

class RequestReader {
 public:
  explicit RequestReader(Limits limits = {});

  // Feeds bytes read from the connection; returns how many it used. It stops at the end of
  // one request, or at an error: bytes past the request are not used (the next request of
  // a pipeline), and are passed again after reset().
  std::size_t parse(std::string_view in);
  // The connection ended. A request in progress becomes an error; with nothing read since
  // the last request, closed() is true (a clean end, nothing to answer).
  void eof();
  // Ready for the next request on the same connection (buffers keep their capacity).
  void reset();
  void set_limits(Limits limits) { limits_ = limits; }

  bool head_done() const { return state_ >= State::kBody; }
  bool done() const { return state_ == State::kDone; }
  bool failed() const { return state_ == State::kError; }
  bool closed() const { return closed_; }
  // Whether any byte of a request arrived (a keep-alive connection between requests has none).
  bool started() const { return started_; }
  const ParseError& error() const { return error_; }

  // The head, once head_done().
  std::string_view method() const { return view(method_); }
  std::string_view target() const { return view(target_); }  // as sent
  int version() const { return version_; }                   // 10 or 11
  std::size_t field_count() const { return fields_.size(); }
  FieldView field(std::size_t i) const { return {view(fields_[i].name), view(fields_[i].value)}; }
  // The first value of a field (names case-insensitive), or nothing.
  std::optional<std::string_view> find(std::string_view name) const;
  // The trailer fields of a chunked request, once done(). Never to be forwarded or read as
  // header fields (an Authorization sent as a trailer must not authenticate); the gateway's
  // privacy rules look at them, so a marking sent there still counts.
  std::size_t trailer_count() const { return trailer_fields_.size(); }
  FieldView trailer(std::size_t i) const;
  bool keep_alive() const { return keep_alive_; }
  bool chunked() const { return chunked_; }
  bool expects_continue() const { return expect_continue_; }
  // Fields a proxy must not forward: the fixed hop-by-hop set (Connection, Keep-Alive,
  // Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade, Proxy-Authorization,
  // Content-Length: the body is re-framed) and every field the Connection header names.
  bool hop_by_hop(std::string_view name) const;

  // The body, decoded from chunked, once done(). The caller may move it out.
  std::string& body() { return body_; }
  // Bytes of head, chunk framing and trailers read for the current request.
  std::size_t overhead_bytes() const { return overhead_; }

 private:
  enum class State {
    kHead,
    kBody,
    kChunkLine,
    kChunkData,
    kChunkDataEnd,
    kTrailers,
    kDone,
    kError
  };
  struct Span {
    std::uint32_t off = 0;
    std::uint32_t len = 0;
  };
  struct FieldSpan {
    Span name;
    Span value;
  };
  std::string_view view(Span s) const { return std::string_view(head_).substr(s.off, s.len); }
  Span span_of(std::string_view part) const {
    return {static_cast<std::uint32_t>(part.data() - head_.data()),
            static_cast<std::uint32_t>(part.size())};
  }
  bool fail(int status, std::string reason);
  std::size_t parse_head(std::string_view in);
  bool head_line();
  bool request_line(std::string_view line);
  bool field_line(std::string_view line);
  bool check_fields();
  std::size_t parse_line(std::string_view in, std::string& line, bool& complete);
  bool chunk_line(std::string_view line);
  bool trailer_line(std::string_view line);
  bool spend(std::size_t n);  // counts n bytes of framing against max_header_bytes

  Limits limits_;
  State state_ = State::kHead;
  bool closed_ = false;
  bool started_ = false;
  ParseError error_;
  std::string head_;            // the request line and fields, as sent
  std::size_t line_start_ = 0;  // where the head's current line starts in head_
  Span method_;
  Span target_;
  int version_ = 11;
  std::vector<FieldSpan> fields_;
  std::string trailers_;  // the trailer lines, one after another (spans below)
  std::vector<FieldSpan> trailer_fields_;
  std::vector<Span> connection_tokens_;
  bool keep_alive_ = true;
  bool chunked_ = false;
  bool expect_continue_ = false;
  std::uint64_t remaining_ = 0;  // of the body (Content-Length) or of the current chunk
  std::string line_;             // a chunk-size line or trailer line being read
  std::string body_;
  std::size_t overhead_ = 0;
};

// Whether `c` may appear in a token (RFC 9110 §5.6.2).
bool token_char(unsigned char c);

}  // namespace hylab::http1
