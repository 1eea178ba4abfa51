// zlib's deflate for tests that send compressed bodies (the privacy unit tests and suite).
#pragma once

#include <zlib.h>

#include <string>
#include <string_view>

namespace hylab::testing {

// deflate with a window: 15 + 16 gzip, 15 zlib, -15 raw deflate.
inline std::string compress(std::string_view in, int window_bits) {
  z_stream z{};
  deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&z, static_cast<uLong>(in.size())) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

inline std::string gzip(std::string_view in) { return compress(in, 15 + 16); }

}  // namespace hylab::testing
