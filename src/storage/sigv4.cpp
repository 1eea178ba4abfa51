// AWS Signature Version 4 (see sigv4.h): builds the canonical request and string to sign the
// way the official test suite and botocore do, and signs with OpenSSL's HMAC-SHA256.
#include "storage/sigv4.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>

namespace hylab::storage {
namespace {

constexpr std::string_view kAlgorithm = "AWS4-HMAC-SHA256";

bool is_unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.' || c == '~';
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// Trimmed, with every inner run of white space (folded continuation lines included) made one
// space: what the spec calls Trimall.
std::string canonical_header_value(std::string_view v) {
  std::string out;
  bool pending_space = false;
  for (char c : v) {
    if (is_space(c)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out += ' ';
    pending_space = false;
    out += c;
  }
  return out;
}

// RFC 3986 section 5.2.4 plus the removal of empty segments AWS services want. Follows
// botocore's remove_dot_segments: ".." at the root stays at the root, and a trailing slash
// is kept only when the input had one and something is left.
std::string normalize(std::string_view path) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view seg = path.substr(start, end - start);
    if (seg == "..") {
      if (!out.empty()) out.pop_back();
    } else if (!seg.empty() && seg != ".") {
      out.push_back(seg);
    }
    start = end + 1;
  }
  std::string result = "/";
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (i > 0) result += '/';
    result += out[i];
  }
  if (!out.empty() && path.ends_with('/')) result += '/';
  return result;
}

std::string canonical_uri(std::string_view path, const SignOptions& opt) {
  std::string uri = opt.normalize_path ? normalize(path) : std::string(path);
  if (opt.double_encode) uri = uri_encode(uri, false);
  return uri.empty() ? "/" : uri;
}

struct HeaderSet {
  std::string canonical;  // "name:value\n" for each name, sorted
  std::string signed_names;
};

HeaderSet canonical_headers(const Pairs& headers) {
  // Repeated names keep their order of appearance, joined with ',' as the spec says.
  std::map<std::string, std::string> by_name;
  for (const auto& [name, value] : headers) {
    auto [it, inserted] = by_name.try_emplace(lower(name), canonical_header_value(value));
    if (!inserted) {  // (append, not "," + value: gcc 12 warns falsely on that at -O2)
      it->second += ',';
      it->second += canonical_header_value(value);
    }
  }
  HeaderSet set;
  for (const auto& [name, value] : by_name) {
    set.canonical += name + ":" + value + "\n";
    if (!set.signed_names.empty()) set.signed_names += ';';
    set.signed_names += name;
  }
  return set;
}

std::string amz_date(std::chrono::system_clock::time_point t) {
  auto secs = std::chrono::floor<std::chrono::seconds>(t);
  auto days = std::chrono::floor<std::chrono::days>(secs);
  std::chrono::year_month_day ymd{days};
  std::chrono::hh_mm_ss hms{secs - days};
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04d%02u%02uT%02d%02d%02dZ", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<int>(hms.hours().count()), static_cast<int>(hms.minutes().count()),
                static_cast<int>(hms.seconds().count()));
  return buf;
}

// The parts every signature shares; `date` is the x-amz-date value.
struct Scope {
  std::string date;
  std::string scope;  // yyyymmdd/region/service/aws4_request
};

Scope make_scope(const SignOptions& opt) {
  Scope s;
  s.date = amz_date(opt.time);
  s.scope = s.date.substr(0, 8) + "/" + opt.region + "/" + opt.service + "/aws4_request";
  return s;
}

void finish(Signed& out, const Scope& scope, const Credentials& creds, const SignOptions& opt) {
  out.string_to_sign = std::string(kAlgorithm) + "\n" + scope.date + "\n" + scope.scope + "\n" +
                       sha256_hex(out.canonical_request);
  std::string key = hmac_sha256("AWS4" + creds.secret_access_key, scope.date.substr(0, 8));
  key = hmac_sha256(key, opt.region);
  key = hmac_sha256(key, opt.service);
  key = hmac_sha256(key, "aws4_request");
  out.signature = hex(hmac_sha256(key, out.string_to_sign));
}

std::string payload_hash(const SignRequest& req) {
  return req.payload_sha256.empty() ? sha256_hex("") : req.payload_sha256;
}

std::string build_canonical_request(const SignRequest& req, const SignOptions& opt,
                                    const Pairs& query, const HeaderSet& headers) {
  return req.method + "\n" + canonical_uri(req.path, opt) + "\n" + canonical_query(query) + "\n" +
         headers.canonical + "\n" + headers.signed_names + "\n" + payload_hash(req);
}

}  // namespace

std::string uri_encode(std::string_view s, bool encode_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (is_unreserved(c) || (c == '/' && !encode_slash)) {
      out += ch;
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
    }
  }
  return out;
}

std::string canonical_query(const Pairs& query) {
  std::vector<std::pair<std::string, std::string>> encoded;
  encoded.reserve(query.size());
  for (const auto& [name, value] : query) {
    encoded.emplace_back(uri_encode(name, true), uri_encode(value, true));
  }
  std::sort(encoded.begin(), encoded.end());
  std::string out;
  for (const auto& [name, value] : encoded) {
    if (!out.empty()) out += '&';
    out += name + "=" + value;
  }
  return out;
}

Signed sign_headers(const SignRequest& req, const Credentials& creds, const SignOptions& opt) {
  Scope scope = make_scope(opt);
  Signed out;
  out.add.emplace_back("x-amz-date", scope.date);
  if (opt.content_sha256_header) out.add.emplace_back("x-amz-content-sha256", payload_hash(req));
  if (!creds.session_token.empty()) {
    out.add.emplace_back("x-amz-security-token", creds.session_token);
  }
  // The signer owns these: a copy left in the caller's headers (a retry, say) would be
  // signed twice and sent with a stale value.
  Pairs headers;
  for (const auto& h : req.headers) {
    std::string name = lower(h.first);
    bool replaced =
        name == "authorization" ||
        std::any_of(out.add.begin(), out.add.end(), [&](const auto& a) { return a.first == name; });
    if (!replaced) headers.push_back(h);
  }
  headers.insert(headers.end(), out.add.begin(), out.add.end());
  HeaderSet set = canonical_headers(headers);
  out.canonical_request = build_canonical_request(req, opt, req.query, set);
  finish(out, scope, creds, opt);
  out.add.emplace_back("authorization", std::string(kAlgorithm) +
                                            " Credential=" + creds.access_key_id + "/" +
                                            scope.scope + ", SignedHeaders=" + set.signed_names +
                                            ", Signature=" + out.signature);
  return out;
}

Signed presign(const SignRequest& req, const Credentials& creds, const SignOptions& opt) {
  Scope scope = make_scope(opt);
  Pairs headers;
  for (const auto& h : req.headers) {
    if (lower(h.first) != "authorization") headers.push_back(h);
  }
  HeaderSet set = canonical_headers(headers);
  Signed out;
  out.add = {{"X-Amz-Algorithm", std::string(kAlgorithm)},
             {"X-Amz-Credential", creds.access_key_id + "/" + scope.scope},
             {"X-Amz-Date", scope.date},
             {"X-Amz-Expires", std::to_string(opt.expires_seconds)},
             {"X-Amz-SignedHeaders", set.signed_names}};
  if (!creds.session_token.empty()) {
    out.add.emplace_back("X-Amz-Security-Token", creds.session_token);
  }
  Pairs query;
  for (const auto& q : req.query) {
    bool replaced = std::any_of(out.add.begin(), out.add.end(),
                                [&](const auto& a) { return a.first == q.first; });
    if (!replaced && q.first != "X-Amz-Signature") query.push_back(q);
  }
  query.insert(query.end(), out.add.begin(), out.add.end());
  out.canonical_request = build_canonical_request(req, opt, query, set);
  finish(out, scope, creds, opt);
  out.add.emplace_back("X-Amz-Signature", out.signature);
  return out;
}

std::string sha256_hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1) {
    // Only a broken OpenSSL build fails here; a wrong hash would be a silent auth failure.
    std::abort();
  }
  return hex(std::string_view(reinterpret_cast<const char*>(md), len));
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(data.data()), data.size(), md, &len) == nullptr) {
    std::abort();
  }
  return std::string(reinterpret_cast<const char*>(md), len);
}

std::string hex(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char ch : bytes) {
    auto c = static_cast<unsigned char>(ch);
    out += kHex[c >> 4];
    out += kHex[c & 0xF];
  }
  return out;
}

}  // namespace hylab::storage
