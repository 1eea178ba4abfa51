#include "gateway/privacy.h"

#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>

#include "common/text.h"
#include "gateway/matching.h"

namespace hylab::gateway {

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = static_cast<char>(c | 0x20);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

bool unreserved(unsigned char c) {
  return std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

// RFC 3986 §5.2.4 on a path that starts with '/', with repeated slashes merged.
std::string remove_dot_segments(std::string_view in) {
  std::vector<std::string_view> segs;
  bool trailing = false;
  std::size_t i = 0;
  while (i < in.size()) {
    while (i < in.size() && in[i] == '/') ++i;
    std::size_t j = in.find('/', i);
    if (j == std::string_view::npos) j = in.size();
    std::string_view seg = in.substr(i, j - i);
    trailing = j == in.size() ? seg.empty() || seg == "." || seg == ".." : false;
    if (seg == "..") {
      if (!segs.empty()) segs.pop_back();
    } else if (!seg.empty() && seg != ".") {
      segs.push_back(seg);
    }
    i = j;
  }
  std::string out;
  for (auto s : segs) {
    out += '/';
    out.append(s);
  }
  if (out.empty() || (trailing && !segs.empty())) out += '/';
  return out;
}

// Every %XX decoded (for a second, fail-closed look at the path and query); nothing on a
// bad escape. '+' stays: it is a space only in a query.
std::optional<std::string> percent_decode_all(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    int hi = hex_value(s[i + 1]);
    int lo = hex_value(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

// The path as a route sees it: ';' parameters of each segment dropped, no trailing slash.
std::string route_view(std::string_view path) {
  std::string out;
  std::size_t i = 0;
  while (i < path.size()) {
    std::size_t j = path.find('/', i + 1);
    if (j == std::string_view::npos) j = path.size();
    std::string_view seg = path.substr(i, j - i);
    out.append(seg.substr(0, seg.find(';')));
    i = j;
  }
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return to_lower(out);
}

bool route_matches(std::string_view route, std::string_view path) {
  std::string r = to_lower(route);
  while (r.size() > 1 && r.back() == '/' && !r.ends_with("*/")) r.pop_back();
  if (glob_match(r, path)) return true;
  // "P/*" covers P itself.
  if (r.ends_with("/*") && glob_match(r.substr(0, r.size() - 2), path)) return true;
  return false;
}

bool any_pattern(const PrivacyRules& rules, std::string_view text, std::string& rule) {
  for (std::size_t i = 0; i < rules.patterns.size(); ++i) {
    if (contains_pattern(text, rules.patterns[i])) {
      rule = fmt::format("content pattern #{}", i + 1);
      return true;
    }
  }
  return false;
}

// The text with every JSON escape decoded, read left to right as a JSON string would be,
// whether or not the whole is valid JSON: a duplicate key, a trailing comma or a document
// cut short must not hide an escaped pattern from the rules while a lenient upstream reads
// it. \uXXXX becomes its UTF-8 (a lone surrogate a '?'), an unknown or cut escape stays.
std::string json_unescaped(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      out += s[i];
      continue;
    }
    char e = s[i + 1];
    if (e == 'u' && i + 6 <= s.size()) {
      unsigned cp = 0;
      bool ok = true;
      for (std::size_t k = 2; ok && k < 6; ++k) {
        int h = hex_value(s[i + k]);
        ok = h >= 0;
        cp = cp * 16 + static_cast<unsigned>(std::max(h, 0));
      }
      if (ok) {
        if (cp >= 0xD800 && cp <= 0xDFFF) {
          out += '?';
        } else if (cp < 0x80) {
          out += static_cast<char>(cp);
        } else if (cp < 0x800) {
          out += static_cast<char>(0xC0 | (cp >> 6));
          out += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
          out += static_cast<char>(0xE0 | (cp >> 12));
          out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
          out += static_cast<char>(0x80 | (cp & 0x3F));
        }
        i += 5;
        continue;
      }
    }
    static constexpr std::string_view kFrom = "\"\\/bfnrt";
    static constexpr std::string_view kTo = "\"\\/\b\f\n\r\t";
    if (auto at = kFrom.find(e); at != std::string_view::npos) {
      out += kTo[at];
      ++i;
      continue;
    }
    out += s[i];
  }
  return out;
}

// Inflates gzip or zlib (windowBits 15 + 32 detects both) or raw deflate, at most `limit`
// bytes; nothing when the data is not that or decodes to more. Every member of a gzip
// stream counts (RFC 1952 §2.2; gzip -d and most servers decode them all), and bytes after
// the last one make the data unreadable: nothing after the end goes unread.
std::optional<std::string> inflate(std::string_view in, bool raw, std::size_t limit) {
  z_stream z{};
  if (inflateInit2(&z, raw ? -15 : 15 + 32) != Z_OK) return std::nullopt;
  std::string out;
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  int rc = Z_OK;
  char chunk[16384];
  while (rc == Z_OK) {
    z.next_out = reinterpret_cast<Bytef*>(chunk);
    z.avail_out = sizeof chunk;
    rc = ::inflate(&z, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) break;
    out.append(chunk, sizeof chunk - z.avail_out);
    if (out.size() > limit) rc = Z_BUF_ERROR;
    if (rc == Z_STREAM_END && z.avail_in != 0) {
      // Another member (or trailing bytes, which then fail to decode).
      rc = raw ? Z_DATA_ERROR : inflateReset(&z);
      continue;
    }
    if (rc == Z_OK && z.avail_in == 0 && z.avail_out != 0) rc = Z_DATA_ERROR;  // truncated
  }
  inflateEnd(&z);
  if (rc != Z_STREAM_END) return std::nullopt;
  return out;
}

// The body as it means, undoing its Content-Encoding (applied in order, so undone in reverse);
// nothing when a coding is unknown or the data does not decode within the limit.
std::optional<std::string> decode_body(std::string_view body,
                                       const std::vector<std::string>& codings, std::size_t limit) {
  std::string text(body);
  for (auto it = codings.rbegin(); it != codings.rend(); ++it) {
    const std::string& c = *it;
    if (c == "identity") continue;
    std::optional<std::string> next;
    if (c == "gzip" || c == "x-gzip") {
      next = inflate(text, false, limit);
    } else if (c == "deflate") {
      next = inflate(text, false, limit);            // zlib-wrapped, as RFC 9110 says
      if (!next) next = inflate(text, true, limit);  // raw deflate, as some clients send it
    }
    if (!next) return std::nullopt;
    text = std::move(*next);
  }
  return text;
}

std::vector<std::string> coding_list(std::string_view value) {
  std::vector<std::string> out;
  while (true) {
    auto comma = value.find(',');
    std::string c = to_lower(trim(value.substr(0, comma)));
    if (!c.empty()) out.push_back(std::move(c));
    if (comma == std::string_view::npos) return out;
    value.remove_prefix(comma + 1);
  }
}

// Patterns on a body: its raw bytes, its decoded form (Content-Encoding), the decoded text
// of its JSON strings (so "123\u002d45" is "123-45") and its percent-decoded form (a form
// body). An unreadable body is a hit when any pattern is configured: fail closed.
bool body_hits(const PrivacyRules& rules, std::string_view body,
               const std::vector<std::string>& codings, std::string& rule) {
  if (rules.patterns.empty() || body.empty()) return false;
  std::optional<std::string> decoded;
  bool encoded = std::any_of(codings.begin(), codings.end(),
                             [](const std::string& c) { return c != "identity"; });
  if (encoded) {
    decoded = decode_body(body, codings, rules.max_body_bytes);
    if (!decoded) {
      rule = "a body the gateway cannot read (Content-Encoding " +
             join(std::span<const std::string>(codings), ", ") + ")";
      return true;
    }
    body = *decoded;
  } else if (body.size() >= 2 && static_cast<unsigned char>(body[0]) == 0x1f &&
             static_cast<unsigned char>(body[1]) == 0x8b) {
    // gzip sent without saying so (no Content-Encoding): an upstream may still decode it,
    // so it is read as gzip, and one that does not decode is unreadable.
    decoded = inflate(body, false, rules.max_body_bytes);
    if (!decoded) {
      rule = "a gzip body the gateway cannot read (no Content-Encoding)";
      return true;
    }
    body = *decoded;
  }
  if (any_pattern(rules, body, rule)) return true;
  if (body.find('\\') != std::string_view::npos && any_pattern(rules, json_unescaped(body), rule)) {
    return true;
  }
  if (body.find('%') != std::string_view::npos) {
    std::string form;
    form.reserve(body.size());
    for (std::size_t i = 0; i < body.size(); ++i) {
      int hi = i + 2 < body.size() ? hex_value(body[i + 1]) : -1;
      int lo = i + 2 < body.size() ? hex_value(body[i + 2]) : -1;
      if (body[i] == '%' && hi >= 0 && lo >= 0) {
        form += static_cast<char>(hi * 16 + lo);
        i += 2;
      } else {
        form += body[i] == '+' ? ' ' : body[i];
      }
    }
    if (any_pattern(rules, form, rule)) return true;
  }
  return false;
}

// Standard base64 (RFC 4648 §4), padding optional; nothing on any other character.
std::optional<std::string> base64_decode(std::string_view in) {
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v = c >= 'A' && c <= 'Z'   ? c - 'A'
            : c >= 'a' && c <= 'z' ? c - 'a' + 26
            : c >= '0' && c <= '9' ? c - '0' + 52
            : c == '+'             ? 62
            : c == '/'             ? 63
                                   : -1;
    if (c == '=') break;
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

// "Basic CREDENTIALS" in any case and spacing: the decoded "user:password", else nothing.
std::optional<std::string> basic_credentials(std::string_view value) {
  std::string_view v = value;
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  if (v.size() < 6 || !iequals(v.substr(0, 5), "basic") || (v[5] != ' ' && v[5] != '\t'))
    return std::nullopt;
  return base64_decode(trim(v.substr(6)));
}

// Whether `text` holds the key as a whole credential: not run on into more of a token68
// (letters, digits, -._~+/ and '=' padding at its end), so "KEYx" and "KEY=" are other
// keys while "Token KEY", "k=KEY;" and "KEY," hold it.
bool has_key(std::string_view text, std::string_view key) {
  auto token = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) ||
           std::string_view("-._~+/").find(c) != std::string_view::npos;
  };
  if (key.empty()) return false;
  for (auto at = text.find(key); at != std::string_view::npos; at = text.find(key, at + 1)) {
    std::size_t end = at + key.size();
    if ((at == 0 || !token(text[at - 1])) &&
        (end == text.size() || (!token(text[end]) && text[end] != '=')))
      return true;
  }
  return false;
}

}  // namespace

bool same_field_name(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i] == '_' ? '-' : static_cast<char>(std::tolower(static_cast<unsigned char>(a[i])));
    char y = b[i] == '_' ? '-' : static_cast<char>(std::tolower(static_cast<unsigned char>(b[i])));
    if (x != y) return false;
  }
  return true;
}

std::optional<NormalizedTarget> normalize_target(std::string_view raw, std::string& why) {
  NormalizedTarget t;
  if (raw == "*") {
    t.path = "*";
    return t;
  }
  // absolute-form: the path of the URL (the authority routes nothing here).
  if (auto scheme = raw.find("://"); raw.empty() || raw.front() != '/') {
    if (scheme == std::string_view::npos) {
      why = "the request target is neither a path nor an http(s) URL";
      return std::nullopt;
    }
    std::string_view rest = raw.substr(scheme + 3);
    auto slash = rest.find_first_of("/?");
    raw = slash == std::string_view::npos ? std::string_view("/") : rest.substr(slash);
    if (raw.front() == '?') {
      t.query = std::string(raw.substr(1));
      raw = "/";
    }
  }
  auto q = raw.find('?');
  if (q != std::string_view::npos) t.query = std::string(raw.substr(q + 1));
  std::string_view path = raw.substr(0, q);
  std::string decoded;
  decoded.reserve(path.size());
  for (std::size_t i = 0; i < path.size(); ++i) {
    char c = path[i];
    if (c == '\\') {
      why = "a backslash in the request path";
      return std::nullopt;
    }
    if (c != '%') {
      decoded += c;
      continue;
    }
    int hi = i + 2 < path.size() ? hex_value(path[i + 1]) : -1;
    int lo = i + 2 < path.size() ? hex_value(path[i + 2]) : -1;
    if (hi < 0 || lo < 0) {
      why = "an invalid percent-escape in the request path";
      return std::nullopt;
    }
    auto v = static_cast<unsigned char>(hi * 16 + lo);
    if (v == '/' || v == '\\' || v == 0) {
      why = "an encoded '/', '\\' or NUL in the request path";
      return std::nullopt;
    }
    if (unreserved(v)) {
      decoded += static_cast<char>(v);
    } else {
      decoded += fmt::format("%{:02X}", v);  // kept escaped, in one spelling
    }
    i += 2;
  }
  t.path = remove_dot_segments(decoded);
  return t;
}

Verdict classify(const PrivacyRules& rules, const RequestFacts& req) {
  Verdict v;
  auto sensitive = [&](std::string rule) {
    v.sensitive = true;
    v.rule = std::move(rule);
    return v;
  };
  // Routes: on the normalised path, and again with every escape decoded (an upstream that
  // decodes %3B or %20 must not see a protected route the rules did not).
  if (req.target && !rules.routes.empty()) {
    std::vector<std::string> views{route_view(req.target->path)};
    if (auto all = percent_decode_all(req.target->path)) {
      views.push_back(route_view(remove_dot_segments(*all)));
    }
    for (const auto& r : rules.routes) {
      for (const auto& p : views) {
        if (route_matches(r, p)) return sensitive("route " + r);
      }
    }
  }
  std::vector<std::string> codings;
  for (const auto& h : req.headers) {
    if (same_field_name(h.name, rules.marking_header)) {
      // Every occurrence, as a list; quotes and case ignored. Anything but the two
      // non-sensitive levels (also an empty marking) is sensitive.
      bool any = false;
      std::string_view list = h.value;
      while (true) {
        auto comma = list.find(',');
        std::string level = to_lower(trim(list.substr(0, comma)));
        std::erase(level, '"');
        std::erase(level, '\'');
        level = trim(level);
        if (!level.empty()) {
          any = true;
          if (level != "public" && level != "internal")
            return sensitive(fmt::format("header {}", rules.marking_header));
        }
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
      }
      if (!any) return sensitive(fmt::format("header {} (empty)", rules.marking_header));
    } else if (iequals(h.name, "content-encoding")) {
      for (auto& c : coding_list(h.value)) codings.push_back(std::move(c));
    } else {
      // A client key in any field, under any scheme or none: Authorization in every
      // spelling, X-Api-Key, a framework's X_Api_Key, "Token KEY". A key is a secret, so
      // finding it anywhere is finding the client.
      // Basic credentials are base64: the key as the user name or the password counts.
      auto basic = rules.client_keys.empty() ? std::nullopt : basic_credentials(h.value);
      for (const auto& k : rules.client_keys) {
        if (has_key(h.value, k) || (basic && has_key(*basic, k))) return sensitive("client key");
      }
    }
  }
  std::string rule;
  if (req.target && !rules.patterns.empty() && !req.target->query.empty()) {
    if (any_pattern(rules, req.target->query, rule)) return sensitive(rule + " in the query");
    std::string q = req.target->query;
    std::replace(q.begin(), q.end(), '+', ' ');
    if (auto d = percent_decode_all(q); d && any_pattern(rules, *d, rule))
      return sensitive(rule + " in the query");
  }
  if (body_hits(rules, req.body, codings, rule)) return sensitive(rule);
  return v;
}

std::optional<std::string> egress_hit(const PrivacyRules& rules, std::string_view head,
                                      std::string_view body, std::string_view content_encoding) {
  for (const auto& k : rules.client_keys) {
    if (has_key(head, k)) return "a client key in the head";
  }
  // Basic credentials anywhere in the head, decoded.
  for (std::string_view rest = head; !rest.empty();) {
    auto eol = rest.find("\r\n");
    std::string_view line = rest.substr(0, eol);
    if (auto colon = line.find(':'); colon != std::string_view::npos) {
      if (auto basic = basic_credentials(line.substr(colon + 1))) {
        for (const auto& k : rules.client_keys) {
          if (has_key(*basic, k)) return "a client key in the head";
        }
      }
    }
    if (eol == std::string_view::npos) break;
    rest.remove_prefix(eol + 2);
  }
  if (rules.patterns.empty()) return std::nullopt;
  std::string rule;
  if (any_pattern(rules, head, rule)) return rule + " in the head";
  if (body_hits(rules, body, coding_list(content_encoding), rule)) return rule;
  return std::nullopt;
}

}  // namespace hylab::gateway
