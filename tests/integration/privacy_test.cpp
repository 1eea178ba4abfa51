// The privacy suite (issue 18): every class of sensitive request, and generated variants of
// each (spellings of the protected routes, of the marking header and of client keys, JSON
// escapes, compressed and chunked bodies, framing that tries to smuggle a request), sent
// through the real gateway with its local endpoint down, up and at capacity. None may reach
// the cloud upstream, whose recorder (upstream.py --sensitive) flags any sensitive byte in
// any form an upstream could decode; each is answered 503, served locally, or refused.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>
#include <sstream>
#include <thread>

#include "../support/compress.h"
#include "gateway_harness.h"

namespace hylab::testing {
namespace {

using ::testing::HasSubstr;

constexpr std::string_view kClientKey = "hospital-app-key-5a7c";
constexpr std::uint32_t kSeed = 18005;  // the variants are the same on every run

// The request as the wire carries it, printable in a failure message.
std::string printable(std::string_view s) {
  std::string out;
  for (unsigned char c : s.substr(0, 600)) {
    if (c == '\r') {
      out += "\\r";
    } else if (c == '\n') {
      out += "\\n\n";
    } else if (c < 0x20 || c >= 0x7f) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// One request of the suite. `refused`: the status it must get (400, 501), after which the
// connection is closed and nothing of it reaches any upstream; 0: it is sensitive.
struct Case {
  std::string id;
  std::string wire;
  int refused = 0;
  bool own_connection = false;  // framing cases never share a connection
};

// A request as the generators build it; wire() frames it (Content-Length, or chunked when
// `chunks` is set, with `trailers`).
struct Req {
  std::string method = "POST";
  std::string target = "/v1/chat/completions";
  std::vector<std::pair<std::string, std::string>> fields;
  std::string body;
  std::vector<std::string> chunks;  // each "EXT\nDATA": a chunk's extension and data
  std::vector<std::string> trailers;
  std::string wire(const std::string& id) const {
    std::string out =
        fmt::format("{} {} HTTP/1.1\r\nHost: gw\r\nX-Case: {}\r\n", method, target, id);
    for (const auto& [n, v] : fields) out += n + ": " + v + "\r\n";
    if (chunks.empty()) {
      if (method == "POST" || !body.empty())
        out += fmt::format("Content-Length: {}\r\n", body.size());
      return out + "\r\n" + body;
    }
    out += "Transfer-Encoding: chunked\r\n\r\n";
    for (const auto& c : chunks) {
      auto nl = c.find('\n');
      std::string_view data = std::string_view(c).substr(nl + 1);
      out += fmt::format("{:x}{}\r\n", data.size(), c.substr(0, nl)) + std::string(data) + "\r\n";
    }
    out += "0\r\n";
    for (const auto& t : trailers) out += t + "\r\n";
    return out + "\r\n";
  }
};

class Gen {
 public:
  explicit Gen(std::uint32_t salt) : rng_(kSeed + salt) {}
  int below(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }
  bool coin(int percent = 50) { return below(100) < percent; }
  template <class T>
  const T& pick(const std::vector<T>& v) {
    return v[static_cast<std::size_t>(below(static_cast<int>(v.size())))];
  }
  std::string random_case(std::string_view s) {
    std::string out(s);
    for (char& c : out) {
      if (std::isalpha(static_cast<unsigned char>(c)) && coin()) c = static_cast<char>(c ^ 0x20);
    }
    return out;
  }
  std::string hex2(unsigned char c) {
    std::string h = fmt::format("{:02x}", c);
    return random_case(h);
  }
  std::string ssn() {
    return fmt::format("{:03}-{:02}-{:04}", 100 + below(800), 10 + below(89), 1000 + below(8999));
  }
  // Some characters of `s` as JSON \u escapes (at least one when `force`).
  std::string json_escaped(std::string_view s, bool force = true) {
    std::string out;
    bool any = false;
    for (std::size_t i = 0; i < s.size(); ++i) {
      bool esc = coin(40) || (force && !any && i + 1 == s.size());
      if (esc) {
        out += "\\u00" + hex2(static_cast<unsigned char>(s[i]));
        any = true;
      } else {
        out += s[i];
      }
    }
    return out;
  }
  std::string whitespace(int min = 0) {
    std::string w;
    for (int i = below(3) + min; i > 0; --i) w += coin() ? ' ' : '\t';
    return w;
  }

 private:
  std::mt19937 rng_;
};

// JSON escapes with upper-case hex digits (\u002D); the 'u' stays lower-case.
std::string upper_hex(std::string s) {
  for (std::size_t at = s.find("\\u"); at != std::string::npos; at = s.find("\\u", at + 1)) {
    for (std::size_t k = at + 2; k < at + 6 && k < s.size(); ++k)
      s[k] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[k])));
  }
  return s;
}

// A benign JSON body, different per case.
std::string benign(int i) { return fmt::format(R"({{"model":"m","prompt":"hello {}"}})", i); }

// --- Paths: every spelling of the protected routes -----------------------------------

// One spelling of `path`: case, escapes of unreserved characters, empty and dot segments,
// parameters, absolute-form.
std::string spell_path(Gen& g, std::string_view path) {
  std::string out;
  for (std::size_t i = 0; i < path.size(); ++i) {
    char c = path[i];
    if (c == '/') {
      out += '/';
      int r = g.below(10);
      if (r == 0) out += "/";
      if (r == 1) out += "./";
      if (r == 2) out += "%2e/";
      if (r == 3) out += "x/../";
      if (r == 4) out += g.random_case("zz/%2E%2e/");
      continue;
    }
    if (g.coin(25)) {
      out += "%" + g.hex2(static_cast<unsigned char>(c));
    } else {
      out += g.coin(30) ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : c;
    }
    bool end_of_segment = i + 1 == path.size() || path[i + 1] == '/';
    if (end_of_segment && g.coin(10)) out += g.pick<std::string>({";p=1", ";", "%3Bx", "%3b"});
  }
  int tail = g.below(8);
  if (tail == 0) out += "/";
  if (tail == 1) out += "/.";
  if (tail == 2) out += "?q=1";
  if (tail == 3) out += "//";
  if (g.coin(15)) {
    out =
        g.pick<std::string>({"http://gw", "HTTP://gw:80", "https://cloud.example", "http://a@b"}) +
        out;
  }
  return out;
}

const std::vector<std::string> kProtected = {"/v1/embeddings", "/internal", "/internal/report",
                                             "/internal/a/b"};

std::vector<Case> path_cases(int n) {
  std::vector<Case> out;
  // The issue's examples first.
  std::vector<std::string> fixed = {
      "/v1/embeddings/",     "/v1//embeddings", "/v1/%65mbeddings",   "/V1/EMBEDDINGS",
      "/x/../v1/embeddings", "/internal",       "/v1/embeddings;p=1", "http://host/v1/embeddings",
      "/INTERNAL/x",         "/internal;a/b",   "/v1/embeddings%3Bx", "/%2e%2e/v1/%2E/embeddings"};
  Gen g(1);
  for (int i = 0; i < n; ++i) {
    Req r;
    r.target = i < static_cast<int>(fixed.size()) ? fixed[i] : spell_path(g, g.pick(kProtected));
    if (g.coin(30)) {
      r.method = "GET";
    } else {
      r.body = benign(i);
    }
    std::string id = fmt::format("path-{}", i);
    out.push_back({id, r.wire(id)});
  }
  return out;
}

// Targets that cannot be normalised safely: refused with 400, whatever the path.
std::vector<Case> bad_target_cases(int n) {
  std::vector<Case> out;
  Gen g(2);
  std::vector<std::string> bad = {"%2F", "%2f", "%5C", "%5c", "%00", "%zz", "%4", "%G1", "\\"};
  for (int i = 0; i < n; ++i) {
    std::string base = i % 3 == 0 ? "/v1/chat/completions" : g.pick(kProtected);
    std::string path = spell_path(g, base);
    std::size_t q = std::min(path.find('?'), path.size());
    std::size_t from =
        path.find('/', path.find("://") == std::string::npos ? 0 : path.find("://") + 3);
    std::size_t at = from + 1 + static_cast<std::size_t>(g.below(static_cast<int>(q - from)));
    path.insert(std::min(at, q), bad[static_cast<std::size_t>(i) % bad.size()]);
    Req r;
    r.target = path;
    r.body = benign(i);
    std::string id = fmt::format("target-{}", i);
    out.push_back({id, r.wire(id), 400, true});
  }
  return out;
}

// --- The marking header: every occurrence, lists, quotes, case, '_' for '-' ------------

std::vector<Case> marking_cases(int n) {
  std::vector<Case> out;
  Gen g(3);
  std::vector<std::string> levels = {"sensitive",  "pii", "phi",  "secret", "confidential",
                                     "restricted", "",    "true", "1",      "unknown"};
  for (int i = 0; i < n; ++i) {
    auto name = [&] {
      std::string nm = g.random_case("X-Hylab-Data");
      for (char& c : nm) {
        if (c == '-' && g.coin(30)) c = '_';
      }
      return nm;
    };
    auto quoted = [&](std::string v) {
      int q = g.below(4);
      return q == 0 ? "\"" + v + "\"" : q == 1 ? "'" + v + "'" : v;
    };
    Req r;
    r.body = benign(i);
    // public/internal occurrences before and after the sensitive one.
    int before = g.below(3);
    for (int k = 0; k < before; ++k)
      r.fields.push_back({name(), quoted(g.random_case(g.coin() ? "public" : "internal"))});
    std::string level = g.random_case(g.pick(levels));
    std::string value;
    int form = g.below(4);
    if (level.empty() && form < 3) form = 0;  // "public, ''" is public: the empty element is none
    if (form == 0) {
      value = quoted(level);
    } else if (form == 1) {
      value = quoted("public") + "," + g.whitespace() + quoted(level);
    } else if (form == 2) {
      value = quoted(level) + g.whitespace() + "," + g.whitespace() + quoted("internal");
    } else {
      value = "public,," + g.whitespace() + quoted(level) + ", pii";
    }
    r.fields.push_back({name(), g.whitespace() + value + g.whitespace()});
    if (g.coin(30)) r.fields.push_back({name(), "public"});
    if (g.coin(20)) std::swap(r.fields.front(), r.fields.back());
    std::string id = fmt::format("marking-{}", i);
    out.push_back({id, r.wire(id)});
  }
  return out;
}

// --- Client keys: any scheme case, any whitespace, any field that carries a key ----------

std::string base64(std::string_view in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (std::size_t i = 0; i < in.size(); i += 3) {
    std::uint32_t n = static_cast<unsigned char>(in[i]) << 16;
    if (i + 1 < in.size()) n |= static_cast<unsigned char>(in[i + 1]) << 8;
    if (i + 2 < in.size()) n |= static_cast<unsigned char>(in[i + 2]);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += i + 1 < in.size() ? kAlphabet[(n >> 6) & 63] : '=';
    out += i + 2 < in.size() ? kAlphabet[n & 63] : '=';
  }
  return out;
}

std::vector<Case> client_key_cases(int n) {
  std::vector<Case> out;
  Gen g(4);
  for (int i = 0; i < n; ++i) {
    Req r;
    r.body = benign(i);
    std::string key(kClientKey);
    std::string value;
    int form = g.below(10);
    if (form < 6) {
      value = g.random_case("bearer") + g.whitespace(1) + key + g.whitespace();
    } else if (form < 8) {
      value = key;
    } else if (form < 9) {
      value = g.pick<std::string>({"Token ", "ApiKey ", "Key "}) + key;
    } else {  // Basic credentials: the key as the password or the user name, base64
      value =
          g.random_case("basic") + g.whitespace(1) + base64(g.coin() ? "app:" + key : key + ":");
    }
    // Where the key goes: Authorization, or a key field, also with '_' for '-'.
    std::string field = "Authorization";
    if (form >= 6 && g.coin())
      field = g.pick<std::string>({"X-Api-Key", "api-key", "X_Api_Key", "Api_Key"});
    field = g.random_case(field);
    if (g.coin(30)) r.fields.push_back({"Authorization", "Bearer another-app-key"});
    r.fields.push_back({field, value});
    if (g.coin(20)) std::swap(r.fields.front(), r.fields.back());
    std::string id = fmt::format("key-{}", i);
    out.push_back({id, r.wire(id)});
  }
  return out;
}

// --- Body patterns: plain, JSON escapes, keys and nesting, query, forms, compression,
// --- chunks --------------------------------------------------------------------------

std::vector<Case> body_cases(int n) {
  std::vector<Case> out;
  Gen g(5);
  for (int i = 0; i < n; ++i) {
    Req r;
    r.fields.push_back({"Content-Type", "application/json"});
    std::string ssn = g.ssn();
    std::string esc = g.json_escaped(ssn, g.coin(70));
    // The model name escaped too at times: the rewrite for the cloud must not decode it.
    std::string model = g.coin() ? "llama3.1-8b" : g.coin() ? "llama3.1\\u002d8b" : "m";
    std::string doc;
    switch (g.below(8)) {
      case 0:
        doc = fmt::format(R"({{"model":"{}","prompt":"SSN {} on file"}})", model, esc);
        break;
      case 1:
        doc = fmt::format(R"({{"model":"{}","messages":[{{"role":"user","content":"id: {}"}}]}})",
                          model, esc);
        break;
      case 2:  // in a key
        doc = fmt::format(R"({{"model":"{}","meta":{{"{}":true}}}})", model, esc);
        break;
      case 3:  // nested deep
        doc = fmt::format(R"({{"model":"{}","a":[[{{"b":{{"c":["x","{}"]}}}}]]}})", model, esc);
        break;
      case 4:  // a duplicate key: parsers keep the first or the last
        doc = fmt::format(R"({{"model":"{}","prompt":"{}","prompt":"nothing"}})", model, esc);
        break;
      case 5:  // not quite JSON (a trailing comma), still readable by lenient parsers
        doc = fmt::format(R"({{"model":"{}","prompt":"{}",}})", model, esc);
        break;
      case 6:  // pretty-printed, escapes with upper-case hex
        doc = fmt::format("{{\n  \"model\": \"{}\",\n  \"prompt\": \"{}\"\n}}", model,
                          upper_hex(esc));
        break;
      default:  // a form body, percent-encoded
        doc = "prompt=ssn+" + std::string(ssn.substr(0, 3)) + "%2" + (g.coin() ? "D" : "d") +
              ssn.substr(4, 2) + "%2D" + ssn.substr(7);
        r.fields[0].second = "application/x-www-form-urlencoded";
        break;
    }
    int framing = g.below(12);
    if (framing == 0) {  // in the query, not the body
      r.target += g.coin() ? "?ssn=" + ssn : "?q=" + ssn.substr(0, 3) + "%2d" + ssn.substr(4);
      r.body = benign(i);
    } else if (framing <= 3) {
      int how = g.below(6);
      std::string coding = g.random_case(std::vector<std::string>{
          "gzip", "x-gzip", "deflate", "deflate", "gzip, identity", "gzip, gzip"}[how]);
      if (how == 2) {
        r.body = compress(doc, 15);  // zlib-wrapped
      } else if (how == 3) {
        r.body = compress(doc, -15);  // raw deflate
      } else if (how == 5) {
        r.body = gzip(gzip(doc));
      } else {
        r.body = gzip(doc);
      }
      r.fields.push_back({g.random_case("Content-Encoding"), coding});
    } else if (framing == 4) {  // two gzip members: the SSN in the second
      r.body = gzip(benign(i)) + gzip(doc);
      r.fields.push_back({"Content-Encoding", "gzip"});
    } else if (framing == 9) {  // gzip without a Content-Encoding: an upstream may sniff it
      r.body = gzip(doc);
    } else if (framing == 5) {  // an encoding the gateway cannot read: sensitive unread
      r.body = g.coin() ? benign(i) : gzip(benign(i));
      r.fields.push_back({"Content-Encoding", g.pick<std::string>({"br", "zstd", "compress"})});
    } else if (framing <= 8) {  // chunked, the SSN split across chunks
      std::string body = g.coin(25) ? gzip(doc) : doc;
      if (body != doc) r.fields.push_back({"Content-Encoding", "gzip"});
      std::size_t at = 0;
      while (at < body.size()) {
        std::size_t len = 1 + static_cast<std::size_t>(g.below(9));
        std::string ext = g.coin(15) ? ";ext=1" : "";
        r.chunks.push_back(ext + "\n" + body.substr(at, len));
        at += len;
      }
    } else {
      r.body = doc;
    }
    std::string id = fmt::format("body-{}", i);
    out.push_back({id, r.wire(id)});
  }
  return out;
}

// --- Framing that tries to smuggle a request, and trailers ------------------------------

std::vector<Case> framing_cases(int n) {
  std::vector<Case> out;
  Gen g(6);
  struct Shape {
    std::string fields;  // the framing fields
    int status;
    bool chunked_body;  // else a Content-Length-sized body
  };
  std::vector<Shape> shapes = {
      {"Transfer-Encoding: xchunked\r\n", 400, true},
      {"Transfer-Encoding: gzip\r\n", 400, true},
      {"Transfer-Encoding: identity\r\n", 400, true},
      {"Transfer-Encoding: chunked, gzip\r\n", 400, true},
      {"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", 400, true},
      {"Transfer-Encoding: gzip, chunked\r\n", 501, true},
      {"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n", 501, true},
      {"Transfer-Encoding: chunked;q=1\r\n", 400, true},
      {"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", 400, true},
      {"Transfer-Encoding: chunked\r\nContent-Length: 6\r\n", 400, true},
      {"Transfer-Encoding : chunked\r\n", 400, true},
      {"Transfer-Encoding:\r\n chunked\r\n", 400, true},
      {"Content-Length: 6\r\nContent-Length: 6\r\n", 400, false},
      {"Content-Length: 6, 6\r\n", 400, false},
      {"Content-Length: +6\r\n", 400, false},
  };
  for (int i = 0; i < n; ++i) {
    std::string id = fmt::format("framing-{}", i);
    const Shape& s = shapes[static_cast<std::size_t>(i) % shapes.size()];
    // The request inside the body: a protected route, or one that would go anywhere.
    std::string inner = g.coin() ? fmt::format(
                                       "GET /internal/x HTTP/1.1\r\nHost: gw\r\nX-Case: "
                                       "smuggled-{}\r\n\r\n",
                                       i)
                                 : fmt::format("GET /smuggled-{} HTTP/1.1\r\nHost: gw\r\n\r\n", i);
    std::string fields = s.fields;
    if (g.coin()) {
      for (std::string_view name : {"Transfer-Encoding", "Content-Length"}) {
        for (auto at = fields.find(name); at != std::string::npos; at = fields.find(name, at + 1))
          fields.replace(at, name.size(), g.random_case(name));
      }
    }
    std::string body = s.chunked_body ? "0\r\n\r\n" + inner : "{}\r\n\r\n" + inner;
    std::string wire = fmt::format(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nX-Case: "
        "{}\r\n{}\r\n{}",
        id, fields, body);
    out.push_back({id, wire, s.status, true});
  }
  // An HTTP/1.0 request with Transfer-Encoding, a bare LF.
  out.push_back({"framing-http10",
                 "POST /v1/chat/completions HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "0\r\n\r\nGET /internal/x HTTP/1.1\r\nHost: gw\r\n\r\n",
                 400, true});
  out.push_back({"framing-lf",
                 "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\nContent-Length: 2\r\n\r\n{}", 400,
                 true});
  return out;
}

// Trailers: never forwarded as fields; a marking or a client key there marks the request.
std::vector<Case> trailer_cases(int n) {
  std::vector<Case> out;
  Gen g(7);
  for (int i = 0; i < n; ++i) {
    Req r;
    std::string body = benign(i);
    r.chunks = {"\n" + body.substr(0, 5), "\n" + body.substr(5)};
    if (i % 3 == 0) r.trailers.push_back(g.random_case("X-Hylab-Data") + ": sensitive");
    if (i % 3 == 1) r.trailers.push_back("authorization: Bearer " + std::string(kClientKey));
    if (i % 3 == 2) r.trailers.push_back("x_hylab_data: pii");
    if (g.coin()) r.trailers.insert(r.trailers.begin(), "X-Checksum: 1");
    std::string id = fmt::format("trailer-{}", i);
    out.push_back({id, r.wire(id), 0, true});
  }
  return out;
}

enum class Local { kDown, kUp, kFull };
enum class Kind { kPaths, kMarking, kClientKeys, kBody, kFraming };

std::string state_name(Local s) {
  return s == Local::kDown ? "LocalDown" : s == Local::kUp ? "LocalUp" : "LocalAtCapacity";
}
std::string kind_name(Kind k) {
  switch (k) {
    case Kind::kPaths:
      return "Paths";
    case Kind::kMarking:
      return "MarkingHeader";
    case Kind::kClientKeys:
      return "ClientKeys";
    case Kind::kBody:
      return "BodyPatterns";
    default:
      return "Framing";
  }
}

std::vector<Case> cases_of(Kind k) {
  std::vector<Case> out;
  auto add = [&](std::vector<Case> more) {
    for (auto& c : more) out.push_back(std::move(c));
  };
  switch (k) {
    case Kind::kPaths:
      add(path_cases(100));
      add(bad_target_cases(36));
      break;
    case Kind::kMarking:
      add(marking_cases(100));
      break;
    case Kind::kClientKeys:
      add(client_key_cases(100));
      break;
    case Kind::kBody:
      add(body_cases(150));
      break;
    case Kind::kFraming:
      add(framing_cases(45));
      add(trailer_cases(15));
      break;
  }
  return out;
}

class PrivacySuite : public GatewayHarness,
                     public ::testing::WithParamInterface<std::tuple<Local, Kind>> {
 protected:
  Local state() const { return std::get<0>(GetParam()); }

  // The cloud recorder flags every sensitive byte; the local one any marking that should
  // have been taken off.
  void write_rules() {
    std::ofstream(path("cloud-rules.json")) << fmt::format(
        R"({{"patterns": ["[0-9]{{3}}-[0-9]{{2}}-[0-9]{{4}}"], "secrets": ["{}"],
            "header_names": ["X-Hylab-Data"], "path_words": ["embeddings", "internal", "smuggled"]}})",
        kClientKey);
    std::ofstream(path("local-rules.json")) << R"({"header_names": ["X-Hylab-Data"]})";
  }

  void start() {
    write_rules();
    hold_ = path("hold");
    int local = 0;
    if (state() == Local::kDown) {
      local = down_.port();  // refuses connections for the whole test
    } else {
      local = upstream("local", state() == Local::kFull ? hold_ : "",
                       {"--sensitive", path("local-rules.json")});
    }
    int cloud = upstream("cloud", "", {"--sensitive", path("cloud-rules.json")});
    start_gateway(fmt::format(R"(gateway:
  listen: 127.0.0.1:0
  admin: 127.0.0.1:0
  threads: 2
  local:
    - {{name: gpu-box, url: "http://127.0.0.1:{}", max_inflight: {}}}
  cloud:
    - {{name: cloud-a, url: "http://127.0.0.1:{}", max_inflight: 100, api_key_env: HYLAB_TEST_CLOUD_KEY}}
  timeouts: {{connect: 1s, response: 120s}}
  limits: {{max_body: 64KiB, max_header: 8KiB}}
  models: {{llama3.1-8b: gpt-4o-mini}}
  sensitive_queue_timeout_ms: 0
  privacy:
    routes: ["/v1/embeddings", "/internal/*"]
    client_key_envs: [HYLAB_TEST_HOSPITAL_KEY]
    patterns: ["###-##-####"]
)",
                              local, state() == Local::kFull ? 1 : 4, cloud),
                  {fmt::format("HYLAB_TEST_HOSPITAL_KEY={}", kClientKey)});
    if (state() == Local::kFull) {
      // The only local slot, taken by a request the upstream holds.
      std::ofstream(hold_).close();
      holder_ = std::thread([this] { send("/v1/models"); });
      ASSERT_TRUE(wait_until([&] { return lines(path("local.rec")) == 1; }));
    }
  }

  void TearDown() override {
    std::filesystem::remove(hold_);
    if (holder_.joinable()) holder_.join();
    GatewayHarness::TearDown();
  }

  // A plain request, which goes wherever the policy sends it: the cloud path is open.
  void control(RawClient& c, const std::string& id) {
    Req r;
    r.body = R"({"model":"llama3.1-8b","prompt":"a control request"})";
    ASSERT_TRUE(c.send(r.wire(id)));
    auto resp = c.read_response();
    ASSERT_TRUE(resp) << c.received();
    EXPECT_EQ(resp->status, 200) << resp->body;
    std::string route = resp->field("X-Hylab-Route");
    if (state() == Local::kUp) {
      EXPECT_EQ(route, "local; endpoint=gpu-box; reason=local-first");
    } else {
      EXPECT_EQ(route, state() == Local::kDown ? "cloud; endpoint=cloud-a; reason=failover"
                                               : "cloud; endpoint=cloud-a; reason=overflow");
    }
    ++controls_;
  }

  void expect_sensitive(const Case& c, const RawResponse& r) {
    std::string route = r.field("X-Hylab-Route");
    if (state() == Local::kUp) {
      EXPECT_EQ(r.status, 200) << c.id << "\n" << printable(c.wire) << "\n" << r.body;
      EXPECT_EQ(route, "local; endpoint=gpu-box; reason=local-first") << c.id;
      EXPECT_THAT(r.body, HasSubstr("\"upstream\": \"local\"")) << c.id;
    } else {
      EXPECT_EQ(r.status, 503) << c.id << "\n" << printable(c.wire) << "\n" << r.body;
      EXPECT_EQ(route, "none; reason=sensitive") << c.id << "\n" << printable(c.wire);
      // Refused as sensitive up front (not only by the check on the way out).
      EXPECT_THAT(r.body, HasSubstr(state() == Local::kDown
                                        ? "sensitive request: it never leaves the lab, and every "
                                          "local endpoint is down"
                                        : "sensitive request: it never leaves the lab, and every "
                                          "local endpoint is at capacity"))
          << c.id << "\n"
          << printable(c.wire);
    }
  }

  void run(const std::vector<Case>& cases) {
    std::unique_ptr<RawClient> shared;
    for (const auto& c : cases) {
      std::unique_ptr<RawClient> own;
      if (!c.own_connection && (!shared || shared->closed()))
        shared = std::make_unique<RawClient>(port_);
      if (c.own_connection) own = std::make_unique<RawClient>(port_);
      RawClient& conn = c.own_connection ? *own : *shared;
      ASSERT_TRUE(conn.connected());
      ASSERT_TRUE(conn.send(c.wire)) << c.id;
      auto r = conn.read_response();
      if (!r) {
        ADD_FAILURE() << c.id << ": no answer\n" << printable(c.wire);
        shared.reset();
        continue;
      }
      if (c.refused) {
        EXPECT_EQ(r->status, c.refused) << c.id << "\n" << printable(c.wire) << "\n" << r->body;
        EXPECT_TRUE(conn.read_until_closed(5)) << c.id << ": the connection stayed open";
        EXPECT_EQ(conn.received(), "") << c.id << ": more than one answer\n" << printable(c.wire);
        ++refused_;
      } else {
        expect_sensitive(c, *r);
        ++sensitive_;
      }
    }
  }

  // What an upstream recorded, one JSON object a request.
  std::vector<json::object> records(const std::string& name) {
    std::vector<json::object> out;
    std::istringstream in(slurp(path(name + ".rec")));
    for (std::string line; std::getline(in, line);) out.push_back(json::parse(line).as_object());
    return out;
  }

  std::string hold_;
  RefusingPort down_;
  std::thread holder_;
  int controls_ = 0;
  int sensitive_ = 0;
  int refused_ = 0;
};

TEST_P(PrivacySuite, NothingSensitiveReachesTheCloud) {
  start();
  if (HasFatalFailure()) return;
  auto cases = cases_of(std::get<1>(GetParam()));
  {
    RawClient c(port_);
    control(c, "control-first");
  }
  run(cases);
  {
    RawClient c(port_);
    control(c, "control-last");
  }
  // The cloud recorder: only the controls arrived, with nothing sensitive in any form.
  int cloud_controls = 0;
  for (const auto& rec : records("cloud")) {
    std::string id(rec.at("headers").as_object().contains("x-case")
                       ? rec.at("headers").at("x-case").as_string()
                       : "");
    const auto& hits = rec.at("sensitive").as_array();
    EXPECT_TRUE(hits.empty()) << "the cloud received sensitive bytes (" << json::serialize(hits)
                              << ") from " << id << ": " << json::serialize(rec);
    if (id.starts_with("control-")) {
      ++cloud_controls;
    } else {
      ADD_FAILURE() << "a request reached the cloud: " << json::serialize(rec);
    }
  }
  EXPECT_EQ(cloud_controls, state() == Local::kUp ? 0 : controls_);
  // The local recorder: every sensitive request served there (when up), none of the
  // refused ones or what they carried, never the marking header or a trailer as a field.
  auto local = records("local");
  for (const auto& rec : local) {
    EXPECT_TRUE(rec.at("sensitive").as_array().empty()) << json::serialize(rec);
    const auto& h = rec.at("headers").as_object();
    std::string id(h.contains("x-case") ? h.at("x-case").as_string() : "");
    EXPECT_FALSE(id.starts_with("target-") || id.starts_with("framing-") ||
                 id.starts_with("smuggled-"))
        << "a refused request reached the local endpoint: " << json::serialize(rec);
    EXPECT_THAT(std::string(rec.at("path").as_string()), ::testing::Not(HasSubstr("smuggled")));
    if (id.starts_with("trailer-")) {
      EXPECT_FALSE(h.contains("authorization") || h.contains("x-checksum"))
          << "a trailer was forwarded as a field: " << json::serialize(rec);
    }
  }
  if (state() == Local::kUp) {
    EXPECT_EQ(static_cast<int>(local.size()), sensitive_ + controls_);
  } else {
    EXPECT_EQ(local.size(), state() == Local::kFull ? 1u : 0u);  // the held request only
  }
  std::string m = metrics();
  EXPECT_EQ(metric(m, "hylab_gateway_sensitive_to_cloud_total"), 0);
  EXPECT_EQ(metric(m, "hylab_gateway_sensitive_to_cloud_blocked_total"), 0)
      << "the check on the way out caught what the classification missed";
  EXPECT_EQ(metric(m, "hylab_gateway_sensitive_refused_total"),
            state() == Local::kUp ? 0 : sensitive_);
  EXPECT_THAT(slurp(path("gateway.log")), ::testing::Not(HasSubstr(std::string(kClientKey))));
  RecordProperty("sensitive", sensitive_);
  RecordProperty("refused", refused_);
}

INSTANTIATE_TEST_SUITE_P(
    Variants, PrivacySuite,
    ::testing::Combine(::testing::Values(Local::kDown, Local::kUp, Local::kFull),
                       ::testing::Values(Kind::kPaths, Kind::kMarking, Kind::kClientKeys,
                                         Kind::kBody, Kind::kFraming)),
    [](const auto& info) {
      return state_name(std::get<0>(info.param)) + "_" + kind_name(std::get<1>(info.param));
    });

// The recorder itself: it flags each form of each sensitive thing, sent to it directly.
class PrivacyRecorder : public GatewayHarness {};

TEST_F(PrivacyRecorder, FlagsEveryFormOfEverySensitiveThing) {
  std::ofstream(path("rules.json")) << fmt::format(
      R"({{"patterns": ["[0-9]{{3}}-[0-9]{{2}}-[0-9]{{4}}"], "secrets": ["{}"],
          "header_names": ["X-Hylab-Data"], "path_words": ["embeddings", "internal"]}})",
      kClientKey);
  int port = upstream("cloud", "", {"--sensitive", path("rules.json")});
  std::string ssn = "123-45-6789";
  std::vector<Req> bad(10);
  bad[0].body = R"({"p":"123\u002d45\u002D6789"})";
  bad[1].body = gzip("x") + gzip(ssn);
  bad[2].body = compress(ssn, -15);
  bad[3].body = "p=123%2d45%2D6789";
  bad[4].target = "/v1/%65mbeddings";
  bad[5].target = "/x/%2569nternal/a";
  bad[6].fields = {{"x_hylab_DATA", "public"}};
  bad[7].fields = {{"Authorization", "Token " + std::string(kClientKey)}};
  bad[8].body = R"({"p":"\u0031\u00323-45-6789"})";
  bad[9].fields = {{"Authorization", "Basic " + base64("app:" + std::string(kClientKey))}};
  RawClient c(port);
  for (std::size_t i = 0; i < bad.size(); ++i) {
    ASSERT_TRUE(c.send(bad[i].wire(fmt::format("probe-{}", i))));
    ASSERT_TRUE(c.read_response());
  }
  Req fine;
  fine.body = R"({"model":"m","prompt":"SSN 12-345-678 and 1234567890"})";
  ASSERT_TRUE(c.send(fine.wire("fine")));
  ASSERT_TRUE(c.read_response());
  auto recs = slurp(path("cloud.rec"));
  std::istringstream in(recs);
  std::size_t i = 0;
  for (std::string line; std::getline(in, line); ++i) {
    auto hits = json::parse(line).at("sensitive").as_array();
    if (i < bad.size()) {
      EXPECT_FALSE(hits.empty()) << "probe " << i << " not flagged: " << line;
    } else {
      EXPECT_TRUE(hits.empty()) << line;
    }
  }
  EXPECT_EQ(i, bad.size() + 1);
}

}  // namespace
}  // namespace hylab::testing
