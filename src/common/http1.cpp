#include "common/http1.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>

#include "common/text.h"

namespace hylab::http1 {

// A body is reserved at most this far ahead of the bytes that arrived: a Content-Length or a
// chunk size alone never makes the reader allocate (1,000 connections each declaring 1 MiB
// and sending nothing hold 1,000 x 64 KiB, not 1 GiB).
constexpr std::uint64_t kReserveAhead = 64 * 1024;

namespace {

// Methods hylab's servers answer. Any other token is 501, as llhttp refuses unknown methods;
// CONNECT (a tunnel) is among them.
constexpr std::array<std::string_view, 8> kMethods{"GET",    "HEAD",  "POST",    "PUT",
                                                   "DELETE", "PATCH", "OPTIONS", "TRACE"};

constexpr std::array<std::string_view, 9> kHopByHop{
    "connection", "keep-alive",          "proxy-connection", "te", "trailer", "transfer-encoding",
    "upgrade",    "proxy-authorization", "content-length"};

bool field_value_char(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }
bool target_char(unsigned char c) { return c > 0x20 && c < 0x7f && c != '#'; }
bool ows(char c) { return c == ' ' || c == '\t'; }

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && ows(s.back())) s.remove_suffix(1);
  return s;
}

// Calls f(element) for each non-empty element of a comma-separated list (RFC 9110 §5.6.1).
template <class F>
void for_each_element(std::string_view list, F f) {
  while (true) {
    auto comma = list.find(',');
    std::string_view e = trim_ows(list.substr(0, comma));
    if (!e.empty()) f(e);
    if (comma == std::string_view::npos) return;
    list.remove_prefix(comma + 1);
  }
}

bool all_tokens(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return token_char(static_cast<unsigned char>(c));
  });
}

}  // namespace

bool token_char(unsigned char c) {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

RequestReader::RequestReader(Limits limits) : limits_(limits) {}

void RequestReader::reset() {
  state_ = State::kHead;
  closed_ = false;
  started_ = false;
  error_ = {};
  head_.clear();
  line_start_ = 0;
  method_ = target_ = {};
  version_ = 11;
  fields_.clear();
  trailers_.clear();
  trailer_fields_.clear();
  connection_tokens_.clear();
  keep_alive_ = true;
  chunked_ = false;
  expect_continue_ = false;
  remaining_ = 0;
  line_.clear();
  body_.clear();
  overhead_ = 0;
}

bool RequestReader::fail(int status, std::string reason) {
  state_ = State::kError;
  error_ = {status, std::move(reason)};
  keep_alive_ = false;
  return false;
}

bool RequestReader::spend(std::size_t n) {
  overhead_ += n;
  if (overhead_ > limits_.max_header_bytes) {
    return fail(431, fmt::format("request head, chunk extensions and trailers over the limit "
                                 "of {} bytes",
                                 limits_.max_header_bytes));
  }
  return true;
}

void RequestReader::eof() {
  if (state_ == State::kDone || state_ == State::kError) return;
  if (!started_) {
    closed_ = true;
    return;
  }
  fail(400, "the connection ended in the middle of a request");
}

std::optional<std::string_view> RequestReader::find(std::string_view name) const {
  for (const auto& f : fields_) {
    if (iequals(view(f.name), name)) return view(f.value);
  }
  return std::nullopt;
}

bool RequestReader::hop_by_hop(std::string_view name) const {
  for (auto h : kHopByHop) {
    if (iequals(h, name)) return true;
  }
  for (const auto& t : connection_tokens_) {
    if (iequals(view(t), name)) return true;
  }
  return false;
}

std::size_t RequestReader::parse(std::string_view in) {
  std::size_t used = 0;
  while (used < in.size() && state_ != State::kDone && state_ != State::kError) {
    std::string_view rest = in.substr(used);
    switch (state_) {
      case State::kHead:
        used += parse_head(rest);
        break;
      case State::kBody:
      case State::kChunkData: {
        auto n = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, rest.size()));
        body_.append(rest.data(), n);
        remaining_ -= n;
        used += n;
        if (remaining_ == 0) state_ = state_ == State::kBody ? State::kDone : State::kChunkDataEnd;
        break;
      }
      case State::kChunkDataEnd: {
        // The CRLF after a chunk's data, one byte at a time if need be.
        char want = line_.empty() ? '\r' : '\n';
        if (rest.front() != want) {
          fail(400, "a chunk's data is not followed by CRLF (its size does not match)");
          break;
        }
        ++used;
        if (!spend(1)) break;
        if (want == '\r') {
          line_.push_back('\r');
        } else {
          line_.clear();
          state_ = State::kChunkLine;
        }
        break;
      }
      case State::kChunkLine:
      case State::kTrailers: {
        bool complete = false;
        std::size_t n = parse_line(rest, line_, complete);
        used += n;
        if (state_ == State::kError || !complete) break;
        std::string_view line(line_);
        line.remove_suffix(2);
        if (state_ == State::kChunkLine ? chunk_line(line) : trailer_line(line)) line_.clear();
        break;
      }
      case State::kDone:
      case State::kError:
        break;
    }
  }
  return used;
}

// Appends bytes of one CRLF-terminated line to `line` (bounded by the framing budget);
// `complete` once its CRLF is in. A bare LF or a CR not followed by LF is an error.
std::size_t RequestReader::parse_line(std::string_view in, std::string& line, bool& complete) {
  std::size_t i = 0;
  while (i < in.size()) {
    char c = in[i++];
    if (!spend(1)) return i;
    if (!line.empty() && line.back() == '\r') {
      if (c != '\n') {
        fail(400, "a CR not followed by LF in the chunked framing");
        return i;
      }
      line.push_back(c);
      complete = true;
      return i;
    }
    if (c == '\n') {
      fail(400, "a bare LF in the chunked framing (lines end in CRLF)");
      return i;
    }
    line.push_back(c);
  }
  return i;
}

// chunk = chunk-size [ chunk-ext ] CRLF; chunk-ext = *( ";" name [ "=" token / quoted-string ] ).
// No whitespace anywhere (llhttp's strict mode allows none either).
bool RequestReader::chunk_line(std::string_view line) {
  std::size_t i = 0;
  std::uint64_t size = 0;
  auto hex = [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; };
  while (i < line.size() && hex(line[i])) {
    if (i >= 15) return fail(400, "a chunk size of more than 15 hex digits");
    char c = line[i++];
    int d = c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
    size = size * 16 + static_cast<std::uint64_t>(d);
  }
  if (i == 0) return fail(400, "a chunk line that does not start with its size in hex");
  auto token_run = [&] {
    std::size_t from = i;
    while (i < line.size() && token_char(static_cast<unsigned char>(line[i]))) ++i;
    return i > from;
  };
  while (i < line.size()) {
    if (line[i++] != ';') return fail(400, "an invalid character after a chunk's size");
    if (i < line.size() && line[i] == '=' && i > 0 && line[i - 1] == ';')
      return fail(400, "an empty chunk extension name");
    if (!token_run()) return fail(400, "an invalid chunk extension name");
    if (i == line.size() || line[i] != '=') continue;
    ++i;
    if (i == line.size() || line[i] == ';') return fail(400, "an empty chunk extension value");
    if (i < line.size() && line[i] == '"') {
      for (++i; i < line.size() && line[i] != '"'; ++i) {
        if (line[i] == '\\' && ++i == line.size()) break;
        if (!field_value_char(static_cast<unsigned char>(line[i])))
          return fail(400, "an invalid character in a quoted chunk extension");
      }
      if (i++ >= line.size()) return fail(400, "an unterminated quoted chunk extension");
    } else if (!token_run()) {
      return fail(400, "an invalid chunk extension value");
    }
  }
  if (size > limits_.max_body_bytes - std::min(limits_.max_body_bytes, body_.size())) {
    return fail(413,
                fmt::format("request body over the limit of {} bytes", limits_.max_body_bytes));
  }
  if (size == 0) {
    state_ = State::kTrailers;
    return true;
  }
  body_.reserve(body_.size() +
                static_cast<std::size_t>(std::min<std::uint64_t>(size, kReserveAhead)));
  remaining_ = size;
  state_ = State::kChunkData;
  return true;
}

// Trailer fields are checked as header fields are, then kept apart (trailer()): never
// forwarded, never read as headers (an Authorization sent as a trailer must not become one).
bool RequestReader::trailer_line(std::string_view line) {
  if (line.empty()) {
    state_ = State::kDone;
    return true;
  }
  if (ows(line.front())) return fail(400, "a folded trailer line (obs-fold)");
  auto colon = line.find(':');
  if (colon == std::string_view::npos || !all_tokens(line.substr(0, colon)))
    return fail(400, "a malformed trailer field");
  // Framing fields are not allowed as trailers (RFC 9110 §6.5.1); llhttp refuses them too.
  if (iequals(line.substr(0, colon), "content-length") ||
      iequals(line.substr(0, colon), "transfer-encoding"))
    return fail(400, "a framing field (Content-Length, Transfer-Encoding) in the trailers");
  for (char c : line.substr(colon + 1)) {
    if (!field_value_char(static_cast<unsigned char>(c)))
      return fail(400, "an invalid character in a trailer field's value");
  }
  auto at = static_cast<std::uint32_t>(trailers_.size());
  trailers_.append(line);
  std::string_view value = trim_ows(line.substr(colon + 1));
  trailer_fields_.push_back({{at, static_cast<std::uint32_t>(colon)},
                             {at + static_cast<std::uint32_t>(value.data() - line.data()),
                              static_cast<std::uint32_t>(value.size())}});
  return true;
}

FieldView RequestReader::trailer(std::size_t i) const {
  std::string_view t(trailers_);
  const auto& f = trailer_fields_[i];
  return {t.substr(f.name.off, f.name.len), t.substr(f.value.off, f.value.len)};
}

std::size_t RequestReader::parse_head(std::string_view in) {
  std::size_t i = 0;
  // Empty lines before a request are ignored (RFC 9112 §2.2), as llhttp does.
  if (head_.empty()) {
    while (i < in.size()) {
      if (line_.empty() && in[i] == '\r') {
        line_.push_back('\r');
      } else if (line_ == "\r" && in[i] == '\n') {
        line_.clear();
      } else if (line_.empty() && in[i] == '\n') {
        fail(400, "a bare LF before the request line (lines end in CRLF)");
        return i + 1;
      } else {
        break;
      }
      ++i;
      if (!spend(1)) return i;
    }
    if (i == in.size()) return i;
    if (!line_.empty()) {
      fail(400, "a CR not followed by LF before the request line");
      return i;
    }
  }
  started_ = true;
  // Copy up to the end of the head (an empty line), never past it, a line at a time; each
  // line is checked as soon as its CRLF is in, so a malformed request fails at the line that
  // makes it so (as llhttp does) rather than when the head ends or reaches the limit.
  while (i < in.size()) {
    std::string_view rest = in.substr(i);
    // Only the bytes within the limit are looked at, so how the bytes arrive never changes
    // which error a head gets (over the limit, or a bad byte before it).
    std::size_t room = limits_.max_header_bytes - std::min(limits_.max_header_bytes, head_.size());
    std::size_t lf = rest.substr(0, room).find('\n');
    std::size_t take = lf == std::string_view::npos ? std::min(rest.size(), room) : lf + 1;
    std::string_view seg = rest.substr(0, take);
    // A CR is only ever the last byte before the LF ending its line.
    std::size_t cr = seg.find('\r');
    if (cr != std::string_view::npos && cr + 1 < seg.size() && seg[cr + 1] != '\n') {
      fail(400, "a CR not followed by LF in the request head");
      return i + cr + 2;
    }
    if (!seg.empty() && !head_.empty() && head_.back() == '\r' && seg.front() != '\n') {
      fail(400, "a CR not followed by LF in the request head");
      return i + 1;
    }
    if (lf != std::string_view::npos) {
      char before = lf > 0 ? seg[lf - 1] : head_.empty() ? '\0' : head_.back();
      if (before != '\r') {
        fail(400, "a bare LF in the request head (lines end in CRLF)");
        return i + take;
      }
    }
    if (lf == std::string_view::npos && take < rest.size()) {
      fail(431, fmt::format("request head over the limit of {} bytes", limits_.max_header_bytes));
      return i + take + 1;
    }
    head_.append(seg.data(), take);
    overhead_ += take;
    i += take;
    if (lf == std::string_view::npos) break;
    if (!head_line()) return i;
    if (state_ != State::kHead) break;  // the empty line: the head is complete
  }
  return i;
}

// One complete line of the head, [line_start_, head_.size()) with its CRLF.
bool RequestReader::head_line() {
  std::string_view head(head_);
  std::string_view line = head.substr(line_start_, head.size() - line_start_ - 2);
  bool first = line_start_ == 0;
  line_start_ = head.size();
  if (first) return request_line(line);
  if (line.empty()) return check_fields();
  return field_line(line);
}

// request-line = method SP request-target SP HTTP-version
bool RequestReader::request_line(std::string_view line) {
  auto sp1 = line.find(' ');
  auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos)
    return fail(400, "a malformed request line (method, target and version, one space apart)");
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (!all_tokens(method)) return fail(400, "a malformed method");
  if (std::find(kMethods.begin(), kMethods.end(), method) == kMethods.end())
    return fail(501, fmt::format("method {} is not implemented", quote(method)));
  if (target.empty() || !std::all_of(target.begin(), target.end(), [](char c) {
        return target_char(static_cast<unsigned char>(c));
      })) {
    return fail(400, "an invalid character in the request target");
  }
  bool origin = target.front() == '/';
  bool asterisk = target == "*" && method == "OPTIONS";
  auto scheme_end = target.find("://");
  bool absolute =
      scheme_end != std::string_view::npos && (iequals(target.substr(0, scheme_end), "http") ||
                                               iequals(target.substr(0, scheme_end), "https"));
  if (!origin && !asterisk && !absolute)
    return fail(400, "a request target that is neither a path nor an http(s) URL");
  if (absolute) {
    // The authority of an absolute-form target: RFC 3986's characters only (llhttp refuses
    // others, such as '"' or '\\', in a host).
    std::string_view rest = target.substr(scheme_end + 3);
    std::string_view authority = rest.substr(0, rest.find_first_of("/?"));
    if (!std::all_of(authority.begin(), authority.end(), [](char c) {
          return std::isalnum(static_cast<unsigned char>(c)) ||
                 std::string_view("-._~%!$&'()*+,;=:@[]").find(c) != std::string_view::npos;
        }))
      return fail(400, "an invalid character in the request target's authority");
  }
  if (version.size() == 8 && version.starts_with("HTTP/") && std::isdigit(version[5]) &&
      version[6] == '.' && std::isdigit(version[7])) {
    if (version == "HTTP/1.1") {
      version_ = 11;
    } else if (version == "HTTP/1.0") {
      version_ = 10;
    } else {
      return fail(505, fmt::format("HTTP version {} is not supported", quote(version)));
    }
  } else {
    return fail(400, "a malformed HTTP version");
  }
  method_ = span_of(method);
  target_ = span_of(target);
  return true;
}

// field-line = field-name ":" OWS field-value OWS
bool RequestReader::field_line(std::string_view line) {
  if (ows(line.front())) return fail(400, "a folded header line (obs-fold)");
  auto colon = line.find(':');
  if (colon == std::string_view::npos) return fail(400, "a header line without a colon");
  std::string_view name = line.substr(0, colon);
  if (!all_tokens(name)) {
    return fail(400, name.empty() || ows(name.back())
                         ? "whitespace or nothing before a header field's colon"
                         : "an invalid character in a header field name");
  }
  std::string_view value = trim_ows(line.substr(colon + 1));
  for (char c : value) {
    if (!field_value_char(static_cast<unsigned char>(c)))
      return fail(400, fmt::format("an invalid character in header field {}", quote(name)));
  }
  // llhttp refuses a tab after the start of these two values (in their trailing whitespace
  // too, where it takes spaces); so does hylab, or a peer in front would refuse what hylab
  // frames (or, worse, the other way round).
  if (iequals(name, "content-length") || iequals(name, "transfer-encoding")) {
    std::string_view raw = line.substr(colon + 1);
    raw.remove_prefix(std::min(raw.size(), raw.find_first_not_of(" \t")));
    if (raw.find('\t') != std::string_view::npos)
      return fail(400, fmt::format("a tab after the start of the value of {}", quote(name)));
  }
  // Content-Length is checked here too, so a duplicate or an overflow fails at its line.
  if (iequals(name, "content-length")) {
    if (find("content-length")) return fail(400, "more than one Content-Length");
    if (value.empty() || value.size() > 18 ||
        !std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return fail(400, fmt::format("Content-Length {} is not a number", quote(value)));
  }
  fields_.push_back({span_of(name), span_of(value)});
  return true;
}

// The framing and connection fields, checked the way RFC 9112 §6 asks of a server.
bool RequestReader::check_fields() {
  std::optional<std::uint64_t> length;
  int hosts = 0;
  bool te = false;
  bool other = false;  // a coding other than chunked, in any Transfer-Encoding field
  bool close = false;
  bool keep = false;
  bool upgrade = false;
  for (const auto& f : fields_) {
    std::string_view name = view(f.name);
    std::string_view value = view(f.value);
    if (iequals(name, "content-length")) {
      length = std::stoull(std::string(value));  // one, all digits: checked by field_line
    } else if (iequals(name, "transfer-encoding")) {
      if (version_ == 10) return fail(400, "Transfer-Encoding in an HTTP/1.0 request");
      // Every Transfer-Encoding field counts, as one list: it must end in chunked, once
      // ("gzip" then "chunked" in two fields is "gzip, chunked"). Unlike other lists, no
      // empty element: llhttp refuses "chunked," too.
      bool bad = false;
      for (std::string_view list = value; !bad;) {
        auto comma = list.find(',');
        std::string_view coding = trim_ows(list.substr(0, comma));
        if (coding.empty()) return fail(400, "an empty element in Transfer-Encoding");
        if (chunked_) bad = true;  // chunked was not the last coding
        if (iequals(coding, "chunked")) {
          chunked_ = true;
        } else if (!all_tokens(coding.substr(0, coding.find(';')))) {
          return fail(400, "a Transfer-Encoding coding that is not a token");
        } else {
          other = true;
        }
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
      }
      te = true;
      if (bad) return fail(400, "a Transfer-Encoding whose last coding is not a single chunked");
      if (other && chunked_)
        return fail(501, "a transfer coding other than chunked is not implemented");
      if (other) chunked_ = false;
    } else if (iequals(name, "upgrade")) {
      upgrade = true;
    } else if (iequals(name, "host")) {
      ++hosts;
    } else if (iequals(name, "connection")) {
      for_each_element(value, [&](std::string_view token) {
        if (iequals(token, "close")) close = true;
        if (iequals(token, "keep-alive")) keep = true;
        connection_tokens_.push_back({static_cast<std::uint32_t>(token.data() - head_.data()),
                                      static_cast<std::uint32_t>(token.size())});
      });
    } else if (iequals(name, "expect")) {
      if (!iequals(value, "100-continue"))
        return fail(417, fmt::format("expectation {} is not supported", quote(value)));
      expect_continue_ = version_ == 11;
    }
  }
  if (te && !chunked_) return fail(400, "a Transfer-Encoding that does not end in chunked");
  if (te && length) return fail(400, "both Content-Length and Transfer-Encoding");
  if (hosts > 1) return fail(400, "more than one Host");
  if (hosts == 0 && version_ == 11 && limits_.require_host)
    return fail(400, "an HTTP/1.1 request without Host");
  // hylab switches to no other protocol: a request asking for one (Upgrade) is answered as
  // HTTP and the connection ends after it, so bytes a peer meant for the new protocol are
  // never read as requests (llhttp stops reading HTTP there too).
  keep_alive_ = !upgrade && (version_ == 11 ? !close : keep && !close);
  if (chunked_) {
    state_ = State::kChunkLine;
    return true;
  }
  remaining_ = length.value_or(0);
  if (remaining_ > limits_.max_body_bytes) {
    return fail(413,
                fmt::format("request body over the limit of {} bytes", limits_.max_body_bytes));
  }
  body_.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, kReserveAhead)));
  state_ = remaining_ == 0 ? State::kDone : State::kBody;
  return true;
}

}  // namespace hylab::http1
