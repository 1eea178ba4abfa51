// libFuzzer target over the HTTP/1.1 request reader (common/http1.h), read the way `serve`
// and the gateway read a connection: bytes in arbitrary pieces, requests pipelined through
// reset(), small limits. The first two bytes pick the limits; the rest is the connection.
// Aborts where an invariant breaks:
// - read whole or in pieces (sizes drawn from the input), the bytes frame the same: the same
//   requests (method, target, body, where each ends), the same end, the same error status;
// - parse() never uses more than it was given, nor stops short without finishing a request
//   or failing;
// - no body is over max_body_bytes;
// - after done(), reset() leaves nothing behind: each request read again alone, by a fresh
//   reader, frames the same.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "common/http1.h"

namespace {

using hylab::http1::Limits;
using hylab::http1::RequestReader;

struct Message {
  std::size_t start = 0;
  std::size_t end = 0;
  std::string method;
  std::string target;
  std::string body;
  bool operator==(const Message&) const = default;
};

struct Outcome {
  std::vector<Message> messages;
  int status = 0;     // of the error, 0 when none
  bool open = false;  // the bytes ended inside a request
  bool operator==(const Outcome&) const = default;
};

void check(bool ok) {
  if (!ok) std::abort();
}

// next_size(): how many bytes the next parse() is offered (at least 1).
template <class NextSize>
Outcome read(std::string_view wire, const Limits& limits, NextSize next_size) {
  Outcome out;
  RequestReader r(limits);
  std::size_t pos = 0;
  std::size_t start = 0;
  while (pos < wire.size()) {
    std::string_view chunk = wire.substr(pos, next_size());
    std::size_t used = r.parse(chunk);
    check(used <= chunk.size());
    pos += used;
    if (r.failed()) {
      check(r.error().status >= 400 && r.error().status < 600);
      out.status = r.error().status;
      return out;
    }
    if (r.done()) {
      check(r.body().size() <= limits.max_body_bytes);
      out.messages.push_back(
          {start, pos, std::string(r.method()), std::string(r.target()), r.body()});
      if (!r.keep_alive()) return out;
      r.reset();
      check(!r.started() && !r.done() && !r.failed() && r.body().empty());
      start = pos;
    } else {
      check(used == chunk.size());
    }
  }
  out.open = r.started();
  r.eof();
  check(r.started() ? r.failed() : r.closed());
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  Limits limits;
  limits.max_header_bytes = 32 + static_cast<std::size_t>(data[0]) * 16;
  limits.max_body_bytes = static_cast<std::size_t>(data[1] & 0x7f) * 8;
  limits.require_host = (data[1] & 0x80) == 0;
  std::string_view wire(reinterpret_cast<const char*>(data + 2), size - 2);

  Outcome whole = read(wire, limits, [] { return std::string_view::npos; });
  // Piece sizes from the input itself, so the fuzzer explores them too.
  std::size_t k = 0;
  Outcome pieces = read(wire, limits, [&] {
    std::size_t n = wire.empty() ? 1 : 1 + static_cast<unsigned char>(wire[k++ % wire.size()]) % 13;
    return n;
  });
  Outcome bytes = read(wire, limits, [] { return std::size_t{1}; });
  check(whole == pieces);
  check(whole == bytes);

  // Each request alone, to a fresh reader, is the same request: reset() kept nothing.
  for (const Message& m : whole.messages) {
    Outcome alone =
        read(wire.substr(m.start, m.end - m.start), limits, [] { return std::string_view::npos; });
    check(alone.messages.size() == 1 && alone.status == 0);
    const Message& a = alone.messages[0];
    check(a.end == m.end - m.start && a.method == m.method && a.target == m.target &&
          a.body == m.body);
  }
  return 0;
}
