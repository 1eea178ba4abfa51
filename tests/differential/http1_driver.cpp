// The hylab side of the differential test (run.js): reads the generator's cases (each a
// little-endian u32 length and that many bytes: one connection's bytes), reads each as a
// server does (tests/unit/common/http1_harness.h: parse, take the request, reset, go on; at
// the end of the bytes, eof()), and writes one JSON line per case: the requests it framed
// (method, target, version, fields and body, bytes as hex; where each ends) and how the
// connection ended. Each case is also read in steps of a few bytes: framing that depends on
// how the bytes arrive is reported as a "split" mismatch.
//
//   http1_driver CASES OUT
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <string_view>

#include "http1_harness.h"

namespace {

using hylab::http1::RequestReader;
using hylab::http1::testing::Outcome;

void hex(std::string& out, std::string_view s) {
  static constexpr char kDigits[] = "0123456789abcdef";
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    out.push_back(kDigits[u >> 4]);
    out.push_back(kDigits[u & 15]);
  }
}

void quoted_hex(std::string& out, std::string_view s) {
  out.push_back('"');
  hex(out, s);
  out.push_back('"');
}

// The fields of each request, which the harness does not keep: read the bytes once more.
std::string fields_json(std::string_view wire, const Outcome& o) {
  std::string out = "[";
  RequestReader r;
  std::size_t pos = 0;
  for (std::size_t m = 0; m < o.messages.size(); ++m) {
    r.reset();
    pos += r.parse(wire.substr(pos));
    if (m > 0) out += ",";
    out += "[";
    for (std::size_t i = 0; i < r.field_count(); ++i) {
      if (i > 0) out += ",";
      quoted_hex(out, r.field(i).name);
      out += ",";
      quoted_hex(out, r.field(i).value);
    }
    out += "]";
  }
  return out + "]";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: http1_driver CASES OUT\n";
    return 2;
  }
  std::ifstream in(argv[1], std::ios::binary);
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::ofstream out(argv[2], std::ios::binary);
  std::size_t off = 0;
  std::size_t index = 0;
  std::string line;
  while (off + 4 <= data.size()) {
    std::uint32_t n = 0;
    for (int b = 3; b >= 0; --b) n = (n << 8) | static_cast<unsigned char>(data[off + b]);
    std::string_view wire = std::string_view(data).substr(off + 4, n);
    off += 4 + n;
    Outcome o = hylab::http1::testing::read_connection(wire, 0, true);
    Outcome split = hylab::http1::testing::read_connection(wire, 1 + index % 7, true);
    line = "{\"i\":" + std::to_string(index++) + ",\"msgs\":[";
    for (std::size_t m = 0; m < o.messages.size(); ++m) {
      const auto& msg = o.messages[m];
      if (m > 0) line += ",";
      line += "{\"m\":";
      quoted_hex(line, msg.method);
      line += ",\"u\":";
      quoted_hex(line, msg.target);
      line += ",\"v\":" + std::to_string(msg.version) + ",\"end\":" + std::to_string(msg.end) +
              ",\"b\":";
      quoted_hex(line, msg.body);
      line += "}";
    }
    line += "],\"h\":" + fields_json(wire, o);
    line += ",\"end\":\"" + std::string(hylab::http1::testing::end_name(o.end)) + "\"";
    line += ",\"eof_failed\":" + std::string(o.eof_failed ? "true" : "false");
    line += ",\"st\":" + std::to_string(o.status) + ",\"why\":";
    quoted_hex(line, o.reason);
    line += ",\"split_same\":" +
            std::string(hylab::http1::testing::same_outcome(o, split) ? "true" : "false");
    line += "}\n";
    out << line;
  }
  return out ? 0 : 1;
}
