#include "gateway/gateway.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/json.hpp>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <memory>
#include <memory_resource>
#include <thread>
#include <tuple>
#include <unordered_map>

#include "common/connection_table.h"
#include "common/http1.h"
#include "common/text.h"
#include "common/units.h"
#include "gateway/loop.h"
#include "gateway/matching.h"
#include "gateway/privacy.h"

namespace hylab::gateway {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
// The data plane runs on the gateway's own loop (gateway/loop.h); Asio is left for signals,
// name resolution and TLS contexts.
template <class T>
using Task = loop::Task<T>;
using loop::Stream;
using Clock = std::chrono::steady_clock;

// Header fields of a message come from an arena kept with its connection and emptied for
// each message: no malloc per header field (Beast's default allocates every field).
using Alloc = std::pmr::polymorphic_allocator<char>;
using Fields = http::basic_fields<Alloc>;
using Request = http::request<http::string_body, Fields>;
using UpstreamResponse = http::response<http::buffer_body, Fields>;
using ResponseParser = http::response_parser<http::buffer_body, Alloc>;

struct Arena {
  Arena() = default;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  // Empties the arena: every message built on it must be gone.
  Alloc fresh() {
    res.release();
    return Alloc(&res);
  }
  alignas(std::max_align_t) std::array<std::byte, 4096> buf;
  std::pmr::monotonic_buffer_resource res{buf.data(), buf.size()};
};

namespace {

std::int64_t now_ns() { return Clock::now().time_since_epoch().count(); }

// The hot path reads straight from the socket and parses in place: Beast's composed reads
// (http::async_read*) add two handler layers, executor work guards and a post to each call.
constexpr std::size_t kReadChunk = 16 * 1024;
// Pieces up to this size are copied into one buffer before a write (send(2), not sendmsg(2)).
constexpr std::size_t kCoalesceMax = 16 * 1024;

struct ReadResult {
  boost::system::error_code ec;
  std::size_t bytes = 0;  // read from the socket by this call
};

// Parses what `buf` holds into `p` until `done(p)` or the parser needs more bytes.
template <class Parser, class Done>
boost::system::error_code parse_held(beast::flat_buffer& buf, Parser& p, Done done) {
  boost::system::error_code ec;
  while (buf.size() > 0 && !done(p)) {
    std::size_t used = p.put(buf.data(), ec);
    buf.consume(used);
    if (ec == http::error::need_more) return {};
    if (ec || used == 0) return ec;
  }
  return ec;
}

// The end of the stream: complete for a body that ends with the connection, an error
// (partial_message) otherwise.
template <class Parser>
boost::system::error_code at_eof(Parser& p) {
  if (!p.got_some()) return http::error::end_of_stream;
  boost::system::error_code ec;
  p.put_eof(ec);
  return ec;
}

// Reads and parses until `done(p)` (the head, or the whole message), a limit or an error.
// A read after the peer's socket was drained waits for epoll (no recv(2) that finds
// nothing: the loop knows when a socket may hold bytes).
template <class Parser, class Done>
Task<ReadResult> read_until(Stream& s, beast::flat_buffer& buf, Parser& p, Done done) {
  ReadResult r;
  for (;;) {
    r.ec = parse_held(buf, p, done);
    if (r.ec || done(p)) co_return r;
    auto space = buf.prepare(kReadChunk);
    auto [ec, n] = co_await s.read_some(static_cast<char*>(space.data()), space.size());
    buf.commit(n);
    r.bytes += n;
    if (ec) {
      r.ec = ec == asio::error::eof ? at_eof(p) : ec;
      if (!r.ec && !done(p)) r.ec = http::error::partial_message;
      co_return r;
    }
  }
}

constexpr auto kHeadDone = [](const auto& p) { return p.is_header_done(); };
constexpr auto kAllDone = [](const auto& p) { return p.is_done(); };

// What the loops know about one upstream: slots, health, counters and the adaptive limit.
// Shared by every loop (atomics only) and kept across reloads while the endpoint's name
// and URL stay the same, so in-flight counts and ejections survive a SIGHUP.
struct EndpointState {
  std::atomic<int> inflight{0};
  std::atomic<std::int64_t> ejected_until{0};  // passive ejection (connect errors, 5xx, timeouts)
  std::atomic<std::int64_t> busy_until{0};     // answered 503 with Retry-After: busy, not dead
  std::atomic<int> consecutive_failures{0};
  std::atomic<int> consecutive_5xx{0};
  std::atomic<bool> healthy{true};  // active health checks
  std::atomic<int> check_passes{0};
  std::atomic<int> check_failures{0};
  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> failures{0};
  std::atomic<std::uint64_t> input_tokens{0};
  std::atomic<std::uint64_t> output_tokens{0};
  // Adaptive limit: latency samples of the current window, the baseline, the limit.
  std::atomic<std::int64_t> window_end{0};
  std::atomic<std::int64_t> window_sum_ns{0};
  std::atomic<std::int64_t> window_count{0};
  std::atomic<double> baseline_ns{0};
  std::atomic<double> limit_f{0};
  std::atomic<int> limit{0};  // 0: no adaptive limit, max_inflight alone
};

// One upstream as configured in the current snapshot (immutable) plus its shared state.
struct Endpoint {
  GatewayEndpoint cfg;
  bool cloud = false;
  std::string host;
  std::string port;
  std::string host_header;
  std::string base_path;  // a URL such as https://api.example.com/openai prefixes targets
  std::string api_key;
  std::string route_prefix;              // "local; endpoint=NAME; reason=", for X-Hylab-Route
  std::shared_ptr<ssl::context> tls;     // https
  std::vector<loop::Address> addresses;  // resolved when the snapshot is built
  std::shared_ptr<EndpointState> st;

  int capacity() const {
    int l = st->limit.load(std::memory_order_relaxed);
    return l > 0 ? std::min(l, cfg.max_inflight) : cfg.max_inflight;
  }
  bool ejected() const { return now_ns() < st->ejected_until.load(std::memory_order_relaxed); }
  bool busy() const { return now_ns() < st->busy_until.load(std::memory_order_relaxed); }
  bool up() const { return st->healthy.load(std::memory_order_relaxed) && !ejected(); }
  bool available() const { return up() && !busy(); }
  bool try_acquire() const {
    int cap = capacity();
    int cur = st->inflight.load(std::memory_order_relaxed);
    while (cur < cap) {
      if (st->inflight.compare_exchange_weak(cur, cur + 1, std::memory_order_acq_rel)) return true;
    }
    return false;
  }
  void release() const { st->inflight.fetch_sub(1, std::memory_order_acq_rel); }
  // Passive ejection with back-off: 1 s, 2 s, 4 s ... up to 30 s while failures continue.
  void eject() const {
    int n = st->consecutive_failures.fetch_add(1, std::memory_order_relaxed);
    double backoff = std::min(30.0, static_cast<double>(1 << std::min(n, 5)));
    st->ejected_until.store(now_ns() + from_seconds(backoff).count(), std::memory_order_relaxed);
  }
  // A connect error or a timeout ejects at once; 5xx answers after three in a row.
  void failed(bool hard) const {
    st->failures.fetch_add(1, std::memory_order_relaxed);
    if (hard || st->consecutive_5xx.fetch_add(1, std::memory_order_relaxed) + 1 >= 3) {
      st->consecutive_5xx.store(0, std::memory_order_relaxed);
      eject();
    }
  }
  void succeeded() const {
    st->consecutive_failures.store(0, std::memory_order_relaxed);
    st->consecutive_5xx.store(0, std::memory_order_relaxed);
  }
  void busy_for(double seconds) const {
    st->busy_until.store(now_ns() + from_seconds(std::clamp(seconds, 0.1, 60.0)).count(),
                         std::memory_order_relaxed);
  }

  // One latency sample (request sent → response header) for the adaptive limit. The
  // loop that closes a window (a CAS on its end) recomputes the limit, Gradient2-style:
  // gradient = tolerance x baseline / recent latency, clamped to [0.5, 1]; new limit =
  // limit x gradient + sqrt(limit), smoothed, within [min_limit, max_inflight]. The
  // baseline falls at once to a faster window and rises slowly (2 % per window).
  void sample(Clock::duration d, const GatewayAdaptive& a) const {
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
    st->window_sum_ns.fetch_add(ns, std::memory_order_relaxed);
    st->window_count.fetch_add(1, std::memory_order_relaxed);
    std::int64_t now = now_ns();
    std::int64_t window = from_seconds(a.window_seconds).count();
    std::int64_t end = st->window_end.load(std::memory_order_relaxed);
    if (end == 0) {
      st->window_end.compare_exchange_strong(end, now + window);
      return;
    }
    if (now < end || !st->window_end.compare_exchange_strong(end, now + window)) return;
    std::int64_t sum = st->window_sum_ns.exchange(0);
    std::int64_t count = st->window_count.exchange(0);
    if (count <= 0) return;
    double recent = static_cast<double>(sum) / static_cast<double>(count);
    double base = st->baseline_ns.load(std::memory_order_relaxed);
    base = base <= 0 || recent < base ? recent : base * 0.98 + recent * 0.02;
    st->baseline_ns.store(base, std::memory_order_relaxed);
    double cur = st->limit_f.load(std::memory_order_relaxed);
    if (cur <= 0) cur = cfg.max_inflight;
    double gradient = std::clamp(a.tolerance * base / recent, 0.5, 1.0);
    double next = cur * gradient + std::sqrt(cur);
    next = cur * (1 - a.smoothing) + next * a.smoothing;
    next = std::clamp(next, static_cast<double>(std::min(a.min_limit, cfg.max_inflight)),
                      static_cast<double>(cfg.max_inflight));
    st->limit_f.store(next, std::memory_order_relaxed);
    st->limit.store(std::max(1, static_cast<int>(std::lround(next))), std::memory_order_relaxed);
  }

  // Active health check result; thresholds decide when the endpoint flips.
  void checked(bool pass, const GatewayHealth& h) const {
    if (pass) {
      st->check_failures.store(0, std::memory_order_relaxed);
      if (st->check_passes.fetch_add(1, std::memory_order_relaxed) + 1 >= h.healthy_threshold)
        st->healthy.store(true, std::memory_order_relaxed);
    } else {
      st->check_passes.store(0, std::memory_order_relaxed);
      if (st->check_failures.fetch_add(1, std::memory_order_relaxed) + 1 >= h.unhealthy_threshold)
        st->healthy.store(false, std::memory_order_relaxed);
    }
  }
};

using EndpointList = std::vector<std::shared_ptr<const Endpoint>>;

// The configuration the loops route by: immutable, built whole, swapped on SIGHUP. Each
// request keeps the snapshot it started with.
struct Snapshot {
  GatewayConfig cfg;
  EndpointList local;
  EndpointList cloud;
  PrivacyRules privacy;          // routes, marking header, client keys (secrets) and patterns
  bool any_model_lists = false;  // some endpoint serves only the models it lists
  std::uint64_t generation = 1;
};
using SnapshotPtr = std::shared_ptr<const Snapshot>;

// A latency histogram the loops update with atomics (Prometheus buckets, seconds).
struct Histogram {
  static constexpr std::array<double, 11> kBounds{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                  0.05,   0.1,   0.5,    1,     5};
  std::array<std::atomic<std::uint64_t>, kBounds.size() + 1> buckets{};
  std::atomic<std::uint64_t> count{0};
  std::atomic<std::uint64_t> sum_ns{0};
  void observe(Clock::duration d) {
    double s = std::chrono::duration<double>(d).count();
    std::size_t i = 0;
    while (i < kBounds.size() && s > kBounds[i]) ++i;
    buckets[i].fetch_add(1, std::memory_order_relaxed);
    count.fetch_add(1, std::memory_order_relaxed);
    sum_ns.fetch_add(static_cast<std::uint64_t>(std::chrono::nanoseconds(d).count()),
                     std::memory_order_relaxed);
  }
};

// Process-wide counters.
struct Shared {
  std::atomic<std::uint64_t> overflow{0};
  std::atomic<std::uint64_t> failover{0};
  std::atomic<std::uint64_t> by_model{0};  // sent to the cloud: no local endpoint serves the model
  std::atomic<std::uint64_t> sensitive_refused{0};
  std::atomic<std::uint64_t> sensitive_to_cloud{0};  // must stay 0: exported to prove it
  std::atomic<std::uint64_t> sensitive_blocked{0};   // stopped by the check on the way out
  std::atomic<std::uint64_t> rejected{0};            // answered by the gateway itself (4xx/5xx)
  std::atomic<std::uint64_t> budget_refused{0};
  std::atomic<std::uint64_t> retries{0};
  std::atomic<std::uint64_t> retry_budget_exhausted{0};
  std::atomic<std::uint64_t> busy_answers{0};  // 503 + Retry-After from an upstream
  std::atomic<std::uint64_t> first_token_timeouts{0};
  std::atomic<std::uint64_t> queued{0};  // requests that waited for a local slot
  std::atomic<std::uint64_t> broken_streams{0};
  std::atomic<std::uint64_t> reloads{0};
  std::atomic<std::uint64_t> reload_failures{0};
  std::atomic<std::uint64_t> evicted{0};  // idle client connections closed to make room
  std::atomic<int> connections{0};        // open client connections
  std::atomic<int> active{0};             // requests being handled
  std::atomic<int> active_retries{0};     // of which are retrying after a send
  Histogram latency[3];  // by where the request went: local, cloud, none (answered by the gateway)
  // Cloud spend of the current UTC day, in micro-dollars; reset when the day changes.
  std::atomic<std::int64_t> spend_day{0};
  std::atomic<std::int64_t> spend_micro_usd{0};
  std::atomic<std::uint64_t> spend_total_micro_usd{0};
  std::atomic<bool> stopping{false};
  std::vector<const loop::Loop*> loops;  // every worker's, set before any runs

  std::uint64_t internal_errors() const {
    std::uint64_t n = 0;
    for (const auto* l : loops) n += l->unhandled_exceptions();
    return n;
  }

  static std::int64_t utc_day() {
    return std::chrono::duration_cast<std::chrono::hours>(
               std::chrono::system_clock::now().time_since_epoch())
               .count() /
           24;
  }
  double spent_today() {
    std::int64_t today = utc_day();
    std::int64_t day = spend_day.load();
    if (day != today && spend_day.compare_exchange_strong(day, today)) spend_micro_usd.store(0);
    return static_cast<double>(spend_micro_usd.load()) / 1e6;
  }
  void add_spend(double usd) {
    spent_today();  // roll the day over first
    auto micro = static_cast<std::int64_t>(usd * 1e6);
    spend_micro_usd.fetch_add(micro);
    spend_total_micro_usd.fetch_add(static_cast<std::uint64_t>(micro));
  }
};

// The least-loaded endpoint (in-flight per weight) that is available, not yet tried and
// has a free slot, acquired; or nothing. One pass, no allocation; if another loop took
// the last slot in between, look again (each retry means one slot fewer overall).
const Endpoint* pick(const EndpointList& pool, const std::vector<const Endpoint*>& tried) {
  for (;;) {
    const Endpoint* best = nullptr;
    int best_load = 0;
    for (const auto& e : pool) {
      int load = e->st->inflight.load(std::memory_order_relaxed);
      if (load >= e->capacity() || !e->available() ||
          std::find(tried.begin(), tried.end(), e.get()) != tried.end()) {
        continue;
      }
      if (!best || load * best->cfg.weight < best_load * e->cfg.weight) {
        best = e.get();
        best_load = load;
      }
    }
    if (!best) return nullptr;
    if (best->try_acquire()) return best;
  }
}

// Message heads written by hand: Beast's serializer costs more CPU than the rest of a
// proxied exchange, and a proxy copies most fields as they are anyway.
void append_field(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.append(": ");
  out.append(value);
  out.append("\r\n");
}

bool hop_by_hop(http::field f) {
  return f == http::field::connection || f == http::field::keep_alive ||
         f == http::field::proxy_connection || f == http::field::te || f == http::field::trailer ||
         f == http::field::transfer_encoding || f == http::field::upgrade;
}

// Where a request goes: the endpoint's base path, Host and API key.
struct UpstreamTarget {
  std::string_view base_path;
  std::string_view host;
  std::string_view api_key;
};

// The request as an upstream gets it: HTTP/1.1 keep-alive, its Host, the endpoint's key
// (replacing the client's), a Content-Length body (a chunked request was read whole), no
// Expect (the body is here already).
void request_head(const Request& req, const UpstreamTarget& to, std::string& out) {
  out.clear();
  out.append(req.method_string());
  out += ' ';
  out.append(to.base_path);
  out.append(req.target());
  out.append(" HTTP/1.1\r\n");
  append_field(out, "Host", to.host);
  if (!to.api_key.empty()) {
    out.append("Authorization: Bearer ");
    out.append(to.api_key);
    out.append("\r\n");
  }
  for (const auto& f : req) {
    http::field n = f.name();
    if (hop_by_hop(n) || n == http::field::host || n == http::field::content_length ||
        n == http::field::expect || (n == http::field::authorization && !to.api_key.empty())) {
      continue;
    }
    append_field(out, f.name_string(), f.value());
  }
  http::verb m = req.method();
  if (!req.body().empty() || m == http::verb::post || m == http::verb::put ||
      m == http::verb::patch) {
    fmt::format_to(std::back_inserter(out), "Content-Length: {}\r\n", req.body().size());
  }
  out.append("\r\n");
}

// The response head as the client gets it.
void response_head(const UpstreamResponse& res, std::string& out, std::string_view route_prefix,
                   std::string_view reason, bool keep_alive, bool http10, bool chunked) {
  out.clear();
  fmt::format_to(std::back_inserter(out), "HTTP/1.1 {} ", res.result_int());
  out.append(res.reason());
  out.append("\r\n");
  for (const auto& f : res) {
    http::field n = f.name();
    if (hop_by_hop(n) || n == http::field::server) continue;
    append_field(out, f.name_string(), f.value());
  }
  out.append("Server: hylab-gateway\r\nX-Hylab-Route: ");
  out.append(route_prefix);
  out.append(reason);
  out.append("\r\n");
  if (!keep_alive) {
    out.append("Connection: close\r\n");
  } else if (http10) {
    out.append("Connection: keep-alive\r\n");
  }
  if (chunked) out.append("Transfer-Encoding: chunked\r\n");
  out.append("\r\n");
}

std::string json_error(std::string_view message) {
  return boost::json::serialize(boost::json::object{{"error", message}}) + "\n";
}

bool openai_path(std::string_view target) {
  target = target.substr(0, target.find('?'));
  return target == "/v1/chat/completions" || target == "/v1/completions" ||
         target == "/v1/embeddings";
}

bool idempotent(http::verb v) {
  return v == http::verb::get || v == http::verb::head || v == http::verb::options ||
         v == http::verb::put || v == http::verb::delete_ || v == http::verb::trace;
}

// Reads `usage` from a response as it streams through: the whole JSON body (up to a
// cap), or each `data:` line of an SSE stream, the last one with a usage block winning
// (OpenAI's stream_options.include_usage, vLLM and others send it in the last chunk).
class UsageScan {
 public:
  static constexpr std::size_t kMaxBody = 4 << 20;
  UsageScan(bool inference, std::string_view content_type) {
    if (!inference) return;
    kind_ = content_type.starts_with("text/event-stream") ? Kind::kSse : Kind::kJson;
  }
  void feed(const char* data, std::size_t n, bool last) {
    if (kind_ == Kind::kJson && last && text_.empty()) {
      read(std::string_view(data, n));  // the whole body in one piece: no copy
      kind_ = Kind::kNone;
      return;
    }
    if (kind_ == Kind::kJson) {
      if (text_.size() + n > kMaxBody) {
        kind_ = Kind::kNone;
        text_.clear();
        return;
      }
      text_.append(data, n);
    } else if (kind_ == Kind::kSse) {
      std::string_view chunk(data, n);
      while (!chunk.empty()) {
        auto nl = chunk.find('\n');
        std::string_view part = chunk.substr(0, nl);
        if (!skipping_) {
          if (text_.size() + part.size() > kMaxBody) {
            skipping_ = true;  // an absurd line: not parsed
            text_.clear();
          } else {
            text_.append(part);
          }
        }
        if (nl == std::string_view::npos) break;
        if (!skipping_) line(text_);
        text_.clear();
        skipping_ = false;
        chunk.remove_prefix(nl + 1);
      }
    }
  }
  // Tokens in and out once the response is complete.
  std::pair<std::uint64_t, std::uint64_t> finish() {
    if (kind_ == Kind::kJson) read(text_);
    if (kind_ == Kind::kSse && !skipping_) line(text_);
    return {in_, out_};
  }

 private:
  enum class Kind { kNone, kJson, kSse };
  void line(std::string_view l) {
    if (!l.starts_with("data:") || l.find("\"usage\"") == std::string_view::npos) return;
    read(l.substr(5));
  }
  void read(std::string_view json) {
    std::string_view text = usage_object(json);
    if (text.empty()) return;
    boost::system::error_code ec;
    unsigned char scratch[2048];  // parsed without touching the heap
    boost::json::monotonic_resource mr(scratch, sizeof scratch);
    boost::json::value usage = boost::json::parse(text, ec, &mr);
    if (ec || !usage.is_object()) return;
    auto count = [&](const char* key) -> std::uint64_t {
      const auto* n = usage.as_object().if_contains(key);
      return n && n->is_int64() && n->as_int64() > 0 ? static_cast<std::uint64_t>(n->as_int64())
                                                     : 0;
    };
    in_ = count("prompt_tokens");
    out_ = count("completion_tokens");
  }
  Kind kind_ = Kind::kNone;
  std::string text_;
  bool skipping_ = false;
  std::uint64_t in_ = 0;
  std::uint64_t out_ = 0;
};

// A client connection: its socket (with its deadline) and what its requests reuse.
struct Peer {
  Peer(loop::Loop& l, int fd) : sock(l, fd) {}
  Stream sock;
  Arena arena;                    // the current request's header fields
  std::string out;                // a small answer piece gathered into one buffer
  std::array<char, 24> prefix{};  // a chunk's size line, alive until its write ends
};

// A pooled upstream connection, plain or TLS, with its deadline.
struct Conn {
  std::unique_ptr<Stream> s;
  beast::flat_buffer buffer;             // kept with the connection: no allocation per exchange
  std::string head;                      // the same for the request head we write
  Arena arena;                           // the header fields of the current exchange
  std::optional<ResponseParser> parser;  // of the current exchange (gone before its arena)
};

// A message the gateway writes itself (errors, admin answers), as it goes on the wire.
std::string to_wire(const http::response<http::string_body>& res) {
  std::string out = fmt::format("HTTP/1.1 {} ", res.result_int());
  out.append(res.reason());
  out.append("\r\n");
  for (const auto& f : res) append_field(out, f.name_string(), f.value());
  out.append("\r\n");
  out.append(res.body());
  return out;
}

enum class Outcome {
  kDone,        // a response reached the client (whole, or cut when the upstream broke)
  kClientGone,  // the client went away while the response was relayed
  kNotSent,     // nothing reached the upstream (connect, TLS or write failed)
  kStale,       // a pooled keep-alive connection turned out closed: try a fresh one
  kFailed,      // sent, then the upstream failed before any byte reached the client
  kTimeout,     // sent, then no response (or no first token) in time
  kBadStatus,   // sent, answered 502/503/504: nothing reached the client
  kBusy,        // answered 503 with Retry-After: loading or saturated, not dead
  kRefused,     // not sent: the bytes bound for a cloud endpoint hold a content pattern
};

// What a request's attempts share.
struct Call {
  bool keep_alive = true;  // the client's connection
  bool resend_ok = false;  // may be sent again after an upstream may have processed it
  bool inference = false;  // an OpenAI-compatible route: usage is read, the model rewritten
  bool http10 = false;     // the client speaks HTTP/1.0: no chunked answers
};

struct Attempt {
  Outcome outcome = Outcome::kNotSent;
  std::string what;         // for errors: what happened, for the client and the log
  bool keep_alive = false;  // kDone: whether the client connection may carry on
};

class Worker {
 public:
  // One of `workers` loops: each takes its share of max_connections.
  Worker(Shared& sh, int workers) : sh_(sh), workers_(std::max(1, workers)) {
    connections_.on_release([this] {
      if (room_) room_->wake();
    });
  }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
  // Coroutines still suspended (a loop that never ran, or stopped) go before what they use.
  ~Worker() { loop_.destroy_all(); }

  loop::Loop& loop() { return loop_; }

  // Adopt a new snapshot on this worker's own loop; pools of endpoints that left go.
  void adopt(SnapshotPtr snap) {
    loop_.post([this, snap = std::move(snap)] {
      // A copy per loop: requests take references on their own loop's copy, so no
      // reference count is shared between threads on the request path.
      snap_ = std::make_shared<const Snapshot>(*snap);
      connections_.set_cap(connection_share());
      for (auto it = pools_.begin(); it != pools_.end();) {
        bool kept = false;
        for (const auto* list : {&snap_->local, &snap_->cloud}) {
          for (const auto& e : *list) kept = kept || e->st == it->second.state;
        }
        it = kept ? std::next(it) : pools_.erase(it);
      }
    });
  }
  void adopt_now(const SnapshotPtr& snap) {
    snap_ = std::make_shared<const Snapshot>(*snap);
    connections_.set_cap(connection_share());
  }
  const SnapshotPtr& snapshot() const { return snap_; }

  // A listening socket (SO_REUSEPORT: every loop has its own on the same port).
  Result<std::uint16_t> listen(const std::string& host, std::uint16_t port,
                               std::unique_ptr<Stream>& slot) {
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(host, ec);
    if (ec)
      return Error{Errc::kInvalidInput, fmt::format("listen address '{}': {}", host, ec.message())};
    tcp::endpoint ep(addr, port);
    int fd = ::socket(ep.protocol().family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    bool ok = fd >= 0 && ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
              ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) == 0 &&
              ::bind(fd, ep.data(), static_cast<socklen_t>(ep.size())) == 0 &&
              ::listen(fd, SOMAXCONN) == 0;
    if (!ok) {
      std::string why = std::strerror(errno);
      if (fd >= 0) ::close(fd);
      return Error{Errc::kIo, fmt::format("cannot listen on {}:{}: {}", host, port, why)};
    }
    sockaddr_storage bound{};
    socklen_t len = sizeof bound;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
    slot = std::make_unique<Stream>(loop_, fd);
    return ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                             : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  }

  Result<std::uint16_t> start(const std::string& host, std::uint16_t port) {
    auto p = listen(host, port, listener_);
    if (p) loop_.post([this] { loop_.spawn(accept_loop(listener_, false)); });
    return p;
  }

  Result<std::uint16_t> start_admin(const std::string& host, std::uint16_t port) {
    auto p = listen(host, port, admin_listener_);
    if (p) loop_.post([this] { loop_.spawn(accept_loop(admin_listener_, true)); });
    return p;
  }

  // Stops taking connections (on this worker's own loop): the accept loop closes the socket.
  void stop_accepting() {
    loop_.post([this] {
      if (listener_) listener_->cancel();
    });
  }

  void start_health_checks() {
    loop_.post([this] { loop_.spawn(health_loop()); });
  }

 private:
  Task<void> accept_loop(std::unique_ptr<Stream>& listener, bool admin) {
    for (;;) {
      // Stopping: stop_accepting's cancel reaches a pending accept only; this covers a loop
      // that was between accepts (backing off, or resumed later for fairness) at that moment.
      if (!admin && sh_.stopping) {
        listener.reset();
        co_return;
      }
      auto [ec, fd] = co_await listener->accept();
      if (ec) {
        if (sh_.stopping || ec == asio::error::operation_aborted) {
          listener.reset();  // new connections are refused from now on
          co_return;
        }
        loop::Sleeper backoff(loop_);  // out of descriptors, say: try again shortly
        co_await backoff.until(loop_.now() + std::chrono::milliseconds(100));
        continue;
      }
      int sock = static_cast<int>(fd);
      int one = 1;
      ::setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      if (admin) {
        loop_.spawn(admin_session(sock));
        continue;
      }
      // At this loop's share of max_connections the longest-waiting idle or slow client
      // connection makes room; while every one is busy, this one waits (later ones wait in
      // the listen backlog).
      std::uint64_t evicted = connections_.evicted();
      while (!connections_.make_room() && !sh_.stopping) {
        loop::Sleeper room(loop_);
        room_ = &room;
        co_await room.until(loop_.now() + std::chrono::milliseconds(100));
        room_ = nullptr;
      }
      sh_.evicted.fetch_add(connections_.evicted() - evicted, std::memory_order_relaxed);
      loop_.spawn(session(sock));
    }
  }

  static void answer(http::response<http::string_body>& res, int status, std::string body,
                     const char* type = "application/json") {
    res.result(static_cast<http::status>(status));
    res.set(http::field::content_type, type);
    res.body() = std::move(body);
  }

  // Writes an answer the gateway made itself; returns whether the connection carries on.
  Task<bool> reply(Peer& client, http::response<http::string_body>& res, bool keep_alive,
                   double timeout) {
    res.set(http::field::server, "hylab-gateway");
    res.keep_alive(keep_alive && !sh_.stopping);
    res.prepare_payload();
    client.sock.set_deadline(from_seconds(timeout));
    std::string wire = to_wire(res);
    auto [wec, wn] = co_await client.sock.write_all(wire);
    co_return !wec && res.keep_alive();
  }

  // Reads requests with the strict reader (common/http1.h): the socket's bytes go through a
  // buffer of at most one read (kReadChunk), and the reader holds at most the head and body
  // limits, so no connection can make the gateway buffer without bound.
  Task<void> session(int fd) {
    Peer client(loop_, fd);
    ConnectionTable::Registration reg(connections_, [&client] { client.sock.cancel(); });
    ConnectionCount counted(sh_);
    beast::flat_buffer buffer;
    http1::RequestReader reader;
    bool first = true;
    for (;;) {
      SnapshotPtr snap = snap_;  // limits for reading; routing takes the newest below
      const GatewayConfig& cfg = snap->cfg;
      reg.set(ConnectionTable::Phase::kIdle);
      reader.reset();
      reader.set_limits({cfg.max_header_bytes, cfg.max_body_bytes});
      client.sock.set_deadline(
          from_seconds(first ? cfg.client_timeout_seconds : cfg.idle_timeout_seconds));
      first = false;
      bool continued = false;
      boost::system::error_code ec;
      while (!reader.done() && !reader.failed()) {
        if (buffer.size() > 0) {
          auto in = static_cast<const char*>(buffer.data().data());
          buffer.consume(reader.parse(std::string_view(in, buffer.size())));
          continue;
        }
        if (reader.head_done() && reader.expects_continue() && !continued) {
          continued = true;
          (void)co_await client.sock.write_all(std::string_view("HTTP/1.1 100 Continue\r\n\r\n"));
        }
        auto space = buffer.prepare(kReadChunk);
        auto [rec, n] =
            co_await client.sock.read_some(static_cast<char*>(space.data()), space.size());
        buffer.commit(n);
        if (reg.aborted()) co_return;  // closed to make room for a new connection
        // A slow client gets the client timeout for the whole request, not per byte.
        if (n > 0 && !reader.started()) {
          client.sock.set_deadline(from_seconds(cfg.client_timeout_seconds));
          reg.set(ConnectionTable::Phase::kReading);
        }
        if (rec) {
          if (rec == asio::error::eof) reader.eof();
          ec = rec == asio::error::eof ? boost::system::error_code() : rec;
          if (ec || reader.closed()) break;
        }
      }
      if (ec || reader.closed()) break;
      if (reader.failed()) {
        sh_.rejected.fetch_add(1, std::memory_order_relaxed);
        http::response<http::string_body> res{http::status::ok, 11};
        answer(res, reader.error().status, json_error(reader.error().reason));
        co_await reply(client, res, false, cfg.client_timeout_seconds);
        break;
      }
      std::string why;
      auto target = normalize_target(reader.target(), why);
      if (!target) {
        sh_.rejected.fetch_add(1, std::memory_order_relaxed);
        http::response<http::string_body> res{http::status::ok, 11};
        answer(res, 400, json_error("request target refused: " + why));
        co_await reply(client, res, false, cfg.client_timeout_seconds);
        break;
      }
      // The configuration current when the request arrived routes it to the end, whatever
      // a reload does meanwhile (a connection idle across a reload gets the new one).
      snap = snap_;
      Request req(std::piecewise_construct, std::make_tuple(),
                  std::make_tuple(client.arena.fresh()));
      Verdict verdict = build_request(*snap, reader, *target, req);
      reg.set(ConnectionTable::Phase::kBusy);
      if (!co_await handle(snap, req, client, reader.keep_alive(), verdict)) break;
    }
    client.sock.shutdown_send();
  }

  // The request as the policy sees it and an upstream gets it: the normalised origin-form
  // target, the fields an upstream may see (no hop-by-hop field, no marking header in any
  // spelling), the body; classified on everything the client sent.
  static Verdict build_request(const Snapshot& snap, http1::RequestReader& reader,
                               const NormalizedTarget& target, Request& req) {
    RequestFacts facts;
    facts.target = &target;
    facts.body = reader.body();
    facts.headers.reserve(reader.field_count());
    for (std::size_t i = 0; i < reader.field_count(); ++i) {
      auto f = reader.field(i);
      facts.headers.push_back({f.name, f.value});
    }
    for (std::size_t i = 0; i < reader.trailer_count(); ++i) {  // classified, never forwarded
      auto f = reader.trailer(i);
      facts.headers.push_back({f.name, f.value});
    }
    Verdict v = classify(snap.privacy, facts);
    req.method_string(reader.method());
    req.target(target.origin_form());
    req.version(reader.version());
    for (std::size_t i = 0; i < reader.field_count(); ++i) {
      auto f = reader.field(i);
      if (reader.hop_by_hop(f.name) || iequals(f.name, "expect") ||
          same_field_name(f.name, snap.privacy.marking_header)) {
        continue;
      }
      req.insert(f.name, f.value);
    }
    req.body() = std::move(reader.body());
    return v;
  }

  // Retries after a send share a budget: at most retry_budget_percent of the requests in
  // flight (at least retry_min_concurrent) may be retrying at once, so a failing upstream
  // cannot multiply the load on the rest.
  bool take_retry(const GatewayConfig& cfg) {
    int allowed = std::max(cfg.retry_min_concurrent,
                           static_cast<int>(sh_.active.load() * cfg.retry_budget_percent / 100.0));
    int cur = sh_.active_retries.load();
    while (cur < allowed) {
      if (sh_.active_retries.compare_exchange_weak(cur, cur + 1)) {
        sh_.retries.fetch_add(1, std::memory_order_relaxed);
        return true;
      }
    }
    sh_.retry_budget_exhausted.fetch_add(1, std::memory_order_relaxed);
    return false;
  }

  // Waits for a local slot until the deadline: woken when a slot on this loop frees, and
  // every few milliseconds for slots freed by other loops.
  // Any local endpoint serving the model counts again, also one tried already: a busy
  // one may be free now.
  Task<const Endpoint*> wait_local(const Snapshot& snap,
                                   const std::vector<const Endpoint*>& ineligible,
                                   Clock::time_point deadline) {
    if (snap.local.empty() || Clock::now() >= deadline) co_return nullptr;
    sh_.queued.fetch_add(1, std::memory_order_relaxed);
    loop::Sleeper sleeper(loop_);
    waiters_.push_back(&sleeper);
    const Endpoint* e = nullptr;
    while (!sh_.stopping) {
      e = pick(snap.local, ineligible);
      if (e || Clock::now() >= deadline) break;
      co_await sleeper.until(std::min(deadline, Clock::now() + std::chrono::milliseconds(5)));
    }
    waiters_.erase(std::find(waiters_.begin(), waiters_.end(), &sleeper));
    co_return e;
  }

  // Every slot of every endpoint the request may use is taken: waits until one frees on
  // either side (woken by a release on this loop, and every few milliseconds for other
  // loops'), or the deadline. The caller then picks again, local first.
  Task<bool> wait_any(const Snapshot& snap, const std::vector<const Endpoint*>& tried,
                      Clock::time_point deadline) {
    if (Clock::now() >= deadline) co_return false;
    sh_.queued.fetch_add(1, std::memory_order_relaxed);
    loop::Sleeper sleeper(loop_);
    waiters_.push_back(&sleeper);
    bool free = false;
    while (!sh_.stopping && !(free = has_free_slot(snap, tried)) && Clock::now() < deadline) {
      co_await sleeper.until(std::min(deadline, Clock::now() + std::chrono::milliseconds(5)));
    }
    waiters_.erase(std::find(waiters_.begin(), waiters_.end(), &sleeper));
    co_return free;
  }

  static bool has_free_slot(const Snapshot& snap, const std::vector<const Endpoint*>& tried) {
    for (const auto* list : {&snap.local, &snap.cloud}) {
      for (const auto& e : *list) {
        if (std::find(tried.begin(), tried.end(), e.get()) != tried.end() || !e->available())
          continue;
        if (e->st->inflight.load(std::memory_order_relaxed) < e->capacity()) return true;
      }
    }
    return false;
  }

  // Whether an endpoint the request may use is up but has no free slot.
  static bool any_full(const Snapshot& snap, const std::vector<const Endpoint*>& tried,
                       bool local_serves) {
    for (const auto* list : {&snap.local, &snap.cloud}) {
      if (list == &snap.local && !local_serves) continue;
      for (const auto& e : *list) {
        if (std::find(tried.begin(), tried.end(), e.get()) == tried.end() && e->available())
          return true;
      }
    }
    return false;
  }

  void release(const Endpoint& e) {
    e.release();
    if (!waiters_.empty()) waiters_.front()->wake();
  }

  // The slot pick() took on an endpoint, given back when the attempt ends, and also when an
  // exception ends the request (epoll_ctl failing in Loop::add, say): no slot is ever lost.
  class Slot {
   public:
    Slot(Worker& w, const Endpoint* e) : w_(w), e_(e) {}
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    ~Slot() { reset(); }
    void reset(const Endpoint* e = nullptr) {
      if (e_) w_.release(*e_);
      e_ = e;
    }
    const Endpoint* get() const { return e_; }

   private:
    Worker& w_;
    const Endpoint* e_;
  };

  // A client connection, counted while it is open (hylab_gateway_connections).
  struct ConnectionCount {
    Shared& sh;
    explicit ConnectionCount(Shared& s) : sh(s) {
      sh.connections.fetch_add(1, std::memory_order_relaxed);
    }
    ~ConnectionCount() { sh.connections.fetch_sub(1, std::memory_order_relaxed); }
    ConnectionCount(const ConnectionCount&) = delete;
    ConnectionCount& operator=(const ConnectionCount&) = delete;
  };

  struct ActiveGuard {
    Shared& sh;
    int retries = 0;
    explicit ActiveGuard(Shared& s) : sh(s) { sh.active.fetch_add(1, std::memory_order_relaxed); }
    ~ActiveGuard() {
      sh.active.fetch_sub(1, std::memory_order_relaxed);
      if (retries) sh.active_retries.fetch_sub(retries);
    }
  };

  // The hybrid policy for one request; writes the answer. Returns whether the client
  // connection carries on.
  Task<bool> handle(SnapshotPtr snap, Request& req, Peer& client, bool keep_alive,
                    const Verdict& verdict) {
    const GatewayConfig& cfg = snap->cfg;
    auto t0 = Clock::now();
    bool sensitive = verdict.sensitive;
    bool inference = openai_path(req.target());
    // A request an upstream may have processed is sent again only where that is safe:
    // idempotent methods, and inference (no side effect) before any byte reached the client.
    bool resend_ok = inference || idempotent(req.method());
    Call call{keep_alive, resend_ok, inference, req.version() == 10};
    ActiveGuard guard(sh_);
    // Endpoints that list their models and lack this one are never tried.
    std::vector<const Endpoint*> ineligible;
    std::string model;
    bool local_serves = !snap->local.empty();
    if (inference && snap->any_model_lists) {
      model = model_of(req.body());
      local_serves = false;
      for (const auto* list : {&snap->local, &snap->cloud}) {
        for (const auto& e : *list) {
          if (serves(cfg, *e, model)) {
            local_serves = local_serves || !e->cloud;
          } else {
            ineligible.push_back(e.get());
          }
        }
      }
    }
    std::vector<const Endpoint*> tried = ineligible;
    std::string last;  // what went wrong with the last endpoint tried
    bool local_failed = false;
    int env = 2;
    auto finish = [&](bool keep) {
      sh_.latency[env].observe(Clock::now() - t0);
      return keep;
    };
    // An answer of the gateway's own, made only when needed (rare; kept out of the frame).
    std::unique_ptr<http::response<http::string_body>> own;
    auto res_ref = [&]() -> http::response<http::string_body>& {
      if (!own) own = std::make_unique<http::response<http::string_body>>(http::status::ok, 11);
      return *own;
    };

    // Sent and then failed before the client saw anything: retry elsewhere when that is
    // safe and the budget allows; otherwise say what happened.
    auto may_retry = [&](const Endpoint& e, const Attempt& a) -> bool {
      if (a.outcome == Outcome::kNotSent || a.outcome == Outcome::kBusy) return true;
      if (resend_ok && take_retry(cfg)) {
        ++guard.retries;
        return true;
      }
      sh_.rejected.fetch_add(1, std::memory_order_relaxed);
      bool timeout = a.outcome == Outcome::kTimeout;
      answer(res_ref(), timeout ? 504 : 502,
             json_error(
                 fmt::format("{} endpoint '{}' {}; not retried: {}", e.cloud ? "cloud" : "local",
                             e.cfg.name, a.what,
                             resend_ok ? "the retry budget is spent"
                                       : "it may have processed the request, and the method is not "
                                         "idempotent")));
      res_ref().set("X-Hylab-Route", fmt::format("{}; endpoint={}; reason=error",
                                                 e.cloud ? "cloud" : "local", e.cfg.name));
      return false;
    };

    // When every slot of every endpoint is taken, the request waits for the first to free
    // on either side (queue_timeout_ms from its arrival, else the connect timeout, as
    // HAProxy's `timeout queue` defaults to `timeout connect`), then goes round again.
    double full_ms =
        cfg.queue_timeout_ms > 0 ? cfg.queue_timeout_ms : cfg.connect_timeout_seconds * 1000;
    auto full_deadline = t0 + from_seconds(full_ms / 1000);
    std::string why;
    bool rewritten = false;
    bool cloud_failed = false;
    for (;;) {  // a round; another after waiting for a slot when every one was taken
      while (local_serves) {
        Slot slot(*this, pick(snap->local, tried));
        const Endpoint* e = slot.get();
        if (!e) {
          // Wait for a local slot before overflowing (queue_timeout_ms from the request's
          // arrival, also after a failed attempt); sensitive requests wait for their own
          // limit even when local endpoints are down: they have nowhere else to go.
          bool any_available = false;
          for (const auto& l : snap->local) {
            any_available =
                any_available || (l->available() && std::find(ineligible.begin(), ineligible.end(),
                                                              l.get()) == ineligible.end());
          }
          double ms = sensitive ? cfg.sensitive_queue_timeout_ms
                                : (any_available ? cfg.queue_timeout_ms : 0);
          if (ms > 0) {
            slot.reset(co_await wait_local(*snap, ineligible, t0 + from_seconds(ms / 1000)));
            e = slot.get();
          }
        }
        if (!e) break;
        Attempt a =
            co_await attempt(*snap, *e, req, call, client, local_failed ? "retry" : "local-first");
        slot.reset();
        if (a.outcome == Outcome::kDone) {
          env = 0;
          co_return finish(a.keep_alive);
        }
        if (a.outcome == Outcome::kClientGone) co_return finish(false);
        last = fmt::format("local endpoint '{}' {}", e->cfg.name, a.what);
        local_failed = local_failed || a.outcome != Outcome::kBusy;
        tried.push_back(e);
        if (!may_retry(*e, a))
          co_return finish(
              co_await reply(client, res_ref(), keep_alive, cfg.client_timeout_seconds));
      }
      bool any_up = false;
      for (const auto& l : snap->local) any_up = any_up || l->up();
      why = !local_serves ? "model" : local_failed || !any_up ? "failover" : "overflow";
      if (sensitive) {
        sh_.sensitive_refused.fetch_add(1, std::memory_order_relaxed);
        answer(res_ref(), 503,
               json_error(
                   why == "model"
                       ? fmt::format("sensitive request: it never leaves the lab, and no local "
                                     "endpoint serves model '{}'",
                                     model)
                       : fmt::format("sensitive request: it never leaves the lab, and every local "
                                     "endpoint is {}; retry shortly",
                                     why == "overflow" ? "at capacity" : "down")));
        res_ref().set(http::field::retry_after, "1");
        res_ref().set("X-Hylab-Route", "none; reason=sensitive");
        co_return finish(co_await reply(client, res_ref(), keep_alive, cfg.client_timeout_seconds));
      }
      if (cfg.daily_cloud_budget_usd > 0 && !snap->cloud.empty() &&
          sh_.spent_today() >= cfg.daily_cloud_budget_usd) {
        sh_.budget_refused.fetch_add(1, std::memory_order_relaxed);
        auto now = std::chrono::system_clock::now().time_since_epoch();
        auto to_midnight =
            86400 - std::chrono::duration_cast<std::chrono::seconds>(now).count() % 86400;
        answer(res_ref(), 429,
               json_error(fmt::format(
                   "the daily cloud budget of ${} is spent (${:.2f} today): overflow to the "
                   "cloud is off until 00:00 UTC, and {}",
                   cfg.daily_cloud_budget_usd, sh_.spent_today(), local_state(why, model))));
        res_ref().set(http::field::retry_after, std::to_string(to_midnight));
        res_ref().set("X-Hylab-Route", "none; reason=budget");
        co_return finish(co_await reply(client, res_ref(), keep_alive, cfg.client_timeout_seconds));
      }
      if (!snap->cloud.empty() && inference && !rewritten) {
        rewrite_model(cfg, req);
        rewritten = true;
      }
      for (;;) {
        Slot slot(*this, pick(snap->cloud, tried));
        const Endpoint* e = slot.get();
        if (!e) break;
        if (sensitive) sh_.sensitive_to_cloud.fetch_add(1);  // unreachable: refused above
        Attempt a = co_await attempt(*snap, *e, req, call, client,
                                     cloud_failed ? std::string_view("retry") : why);
        slot.reset();
        if (a.outcome == Outcome::kDone) {
          env = 1;
          (why == "overflow"   ? sh_.overflow
           : why == "failover" ? sh_.failover
                               : sh_.by_model)
              .fetch_add(1, std::memory_order_relaxed);
          co_return finish(a.keep_alive);
        }
        if (a.outcome == Outcome::kClientGone) co_return finish(false);
        if (a.outcome == Outcome::kRefused) {
          sh_.sensitive_refused.fetch_add(1, std::memory_order_relaxed);
          answer(res_ref(), 503,
                 json_error(fmt::format("sensitive content ({}): it never leaves the lab, and no "
                                        "local endpoint could take it",
                                        a.what)));
          res_ref().set(http::field::retry_after, "1");
          res_ref().set("X-Hylab-Route", "none; reason=sensitive");
          co_return finish(
              co_await reply(client, res_ref(), keep_alive, cfg.client_timeout_seconds));
        }
        last = fmt::format("cloud endpoint '{}' {}", e->cfg.name, a.what);
        cloud_failed = true;
        tried.push_back(e);
        if (!may_retry(*e, a))
          co_return finish(
              co_await reply(client, res_ref(), keep_alive, cfg.client_timeout_seconds));
      }
      if (!any_full(*snap, tried, local_serves) ||
          !co_await wait_any(*snap, tried, full_deadline)) {
        break;
      }
    }
    sh_.rejected.fetch_add(1, std::memory_order_relaxed);
    std::string state = local_state(why, model);
    if (!last.empty()) state += " (last: " + last + ")";
    answer(
        res_ref(), 503,
        json_error(fmt::format("no endpoint can take the request: {}, and {}", state,
                               snap->cloud.empty() ? "no cloud endpoint is configured"
                                                   : "no cloud endpoint is up with a free slot")));
    res_ref().set(http::field::retry_after, "1");
    res_ref().set("X-Hylab-Route", "none; reason=" + why);
    co_return finish(co_await reply(client, res_ref(), keep_alive, cfg.client_timeout_seconds));
  }

  static std::string local_state(std::string_view why, const std::string& model) {
    if (why == "model") return fmt::format("no local endpoint serves model '{}'", model);
    return why == "overflow" ? "every local endpoint is at capacity" : "local endpoints are down";
  }

  static std::string model_of(std::string_view body) {
    boost::system::error_code ec;
    boost::json::value v = boost::json::parse(body, ec);
    if (ec || !v.is_object()) return {};
    const auto* m = v.as_object().if_contains("model");
    return m && m->is_string() ? std::string(m->as_string()) : std::string();
  }

  // Whether an endpoint takes a model: it lists none, or lists it (a cloud endpoint also
  // by the model's cloud alias from gateway.models).
  static bool serves(const GatewayConfig& cfg, const Endpoint& e, const std::string& model) {
    const auto& list = e.cfg.models;
    if (list.empty()) return true;
    if (std::find(list.begin(), list.end(), model) != list.end()) return true;
    if (!e.cloud) return false;
    for (const auto& [local, cloud] : cfg.models) {
      if (local == model && std::find(list.begin(), list.end(), cloud) != list.end()) return true;
    }
    return false;
  }

  // On the way to the cloud, a local model name becomes its cloud alias (gateway.models).
  static void rewrite_model(const GatewayConfig& cfg, Request& req) {
    if (cfg.models.empty()) return;
    boost::system::error_code ec;
    boost::json::value v = boost::json::parse(req.body(), ec);
    if (ec || !v.is_object()) return;
    auto* model = v.as_object().if_contains("model");
    if (!model || !model->is_string()) return;
    for (const auto& [local, cloud] : cfg.models) {
      if (model->as_string() == local && !cloud.empty()) {
        *model = cloud;
        req.body() = boost::json::serialize(v);
        req.prepare_payload();
        return;
      }
    }
  }

  // A new connection to an endpoint (TCP, then TLS with certificate and host checks),
  // both within `timeout`.
  Task<std::unique_ptr<Conn>> connect(const Endpoint& e, double timeout, std::string& err) {
    auto c = co_await loop::connect(loop_, e.addresses, from_seconds(timeout));
    if (!c.stream) {
      err = c.timed_out ? "did not accept a connection in time"
                        : "refused the connection: " + c.ec.message();
      co_return nullptr;
    }
    auto conn = std::make_unique<Conn>();
    conn->s = std::move(c.stream);
    if (!e.tls) co_return conn;
    boost::system::error_code hec = conn->s->attach_tls(e.tls->native_handle(), e.host);
    if (!hec) hec = (co_await conn->s->handshake()).ec;
    if (hec) {
      err = conn->s->expired() ? "did not finish the TLS handshake in time"
                               : "failed the TLS handshake: " + hec.message();
      co_return nullptr;
    }
    co_return conn;
  }

  // One exchange with an endpoint: a pooled keep-alive connection (a stale one is
  // retried once on a fresh connection, as HAProxy does), then the response relayed.
  Task<Attempt> attempt(const Snapshot& snap, const Endpoint& e, Request& req, const Call& call,
                        Peer& client, std::string_view reason) {
    const GatewayConfig& cfg = snap.cfg;
    e.st->requests.fetch_add(1, std::memory_order_relaxed);
    auto& idle = pool_of(e);
    for (int round = 0; round < 2; ++round) {
      std::unique_ptr<Conn> conn;
      bool reused = false;
      if (round == 0 && !idle.conns.empty()) {
        conn = std::move(idle.conns.back());
        idle.conns.pop_back();
        reused = true;
      } else {
        std::string err;
        conn = co_await connect(e, cfg.connect_timeout_seconds, err);
        if (!conn) {
          e.failed(true);
          co_return Attempt{Outcome::kNotSent, err};
        }
      }
      Attempt a = co_await relay(conn, reused, snap, e, req, call, client, reason);
      if (a.outcome == Outcome::kStale) continue;
      switch (a.outcome) {
        case Outcome::kNotSent:
        case Outcome::kFailed:
        case Outcome::kTimeout:
          e.failed(true);
          break;
        case Outcome::kBadStatus:
          e.failed(false);
          break;
        default:
          break;
      }
      co_return a;
    }
    e.failed(true);
    co_return Attempt{Outcome::kNotSent, "closed two connections in a row"};
  }

  // Part of a response to the client in one gather write: the head (if any), the data
  // (framed as a chunk when chunked), and the last chunk when `last`. Not a coroutine: the
  // write itself is awaited (every piece stays alive until it ends).
  Stream::Await send_piece(Peer& client, const std::string& head, bool chunked, const char* data,
                           std::size_t n, bool last) {
    std::size_t prefix_len = 0;
    if (chunked && n > 0) {
      auto r = fmt::format_to_n(client.prefix.data(), client.prefix.size(), "{:x}\r\n", n);
      prefix_len = r.size;
    }
    static constexpr std::string_view kCrlf = "\r\n";
    static constexpr std::string_view kLast = "0\r\n\r\n";
    std::string_view parts[] = {head, std::string_view(client.prefix.data(), prefix_len),
                                std::string_view(data, n),
                                chunked && n > 0 ? kCrlf : std::string_view(),
                                chunked && last ? kLast : std::string_view()};
    std::size_t total = 0;
    for (auto part : parts) total += part.size();
    if (total <= kCoalesceMax) {
      // Small pieces (most answers) go out as one buffer: send(2) costs the kernel less
      // than sendmsg(2) with an iovec per part.
      client.out.clear();
      for (auto part : parts) client.out.append(part);
      return client.sock.write_all(client.out);
    }
    return client.sock.write_all(parts[0], parts[1], parts[2], parts[3], parts[4]);
  }

  Task<Attempt> relay(std::unique_ptr<Conn>& conn, bool reused, const Snapshot& snap,
                      const Endpoint& e, Request& req, const Call& call, Peer& client,
                      std::string_view reason) {
    const GatewayConfig& cfg = snap.cfg;
    Stream& up = *conn->s;
    double first_byte = cfg.first_token_timeout_seconds > 0 ? cfg.first_token_timeout_seconds
                                                            : cfg.response_timeout_seconds;
    auto sent = Clock::now();
    up.set_deadline(from_seconds(first_byte));
    request_head(req, UpstreamTarget{e.base_path, e.host_header, e.api_key}, conn->head);
    if (e.cloud) {
      // The second line of defence: the exact bytes about to leave, after any rewrite.
      if (auto rule = egress_hit(snap.privacy, conn->head, req.body(),
                                 req[http::field::content_encoding])) {
        sh_.sensitive_blocked.fetch_add(1, std::memory_order_relaxed);
        fmt::print(stderr, "hylab gateway: refused to send {} {} to cloud endpoint '{}': {}\n",
                   req.method_string(), req.target().substr(0, req.target().find('?')), e.cfg.name,
                   *rule);
        co_return Attempt{Outcome::kRefused, *rule};
      }
    }
    boost::system::error_code wec;
    if (req.body().size() <= kCoalesceMax) {  // one buffer, one send(2), as in send_piece
      conn->head += req.body();
      wec = (co_await up.write_all(conn->head)).ec;
    } else {
      wec = (co_await up.write_all(conn->head, req.body())).ec;
    }
    if (wec)
      co_return Attempt{reused ? Outcome::kStale : Outcome::kNotSent, "failed: " + wec.message()};
    beast::flat_buffer& buf = conn->buffer;
    buf.clear();
    // The parser lives with the connection, not in this coroutine's frame: frames over
    // 1 KiB miss Asio's recycling allocator and cost a malloc per request.
    conn->parser.reset();  // before its fields' arena is emptied
    ResponseParser& p = conn->parser.emplace(std::piecewise_construct, std::make_tuple(),
                                             std::make_tuple(conn->arena.fresh()));
    p.body_limit(boost::none);  // streamed through, never held whole
    p.header_limit(64 * 1024);
    if (req.method() == http::verb::head) p.skip(true);
    auto [hec, hn] = co_await read_until(up, buf, p, kHeadDone);
    if (hec) {
      if (up.expired()) {
        if (cfg.first_token_timeout_seconds > 0) sh_.first_token_timeouts.fetch_add(1);
        co_return Attempt{Outcome::kTimeout, fmt::format("did not answer within {} s", first_byte)};
      }
      bool nothing_back = hn == 0 && !p.got_some();
      co_return Attempt{reused && nothing_back ? Outcome::kStale : Outcome::kFailed,
                        "failed after the request was sent: " + hec.message()};
    }
    auto& res = p.get();
    int status = static_cast<int>(res.result_int());
    if (!e.cloud && cfg.adaptive.enabled) e.sample(Clock::now() - sent, cfg.adaptive);
    if (status == 503 && res.count(http::field::retry_after)) {
      // Busy (e.g. loading a model), not dead: skipped until Retry-After, never ejected.
      sh_.busy_answers.fetch_add(1, std::memory_order_relaxed);
      e.busy_for(retry_after_seconds(res[http::field::retry_after]));
      co_return Attempt{Outcome::kBusy, "is busy (503 with Retry-After)"};
    }
    if (call.resend_ok && (status == 502 || status == 503 || status == 504)) {
      co_return Attempt{Outcome::kBadStatus, fmt::format("answered {}", status)};
    }
    // Before anything reaches the client, wait (within the first-token timeout) for the
    // first body bytes: until then the request can still fail over.
    // A relay buffer from this loop's free list (not in the coroutine frame: no 16 KiB
    // allocation per request).
    std::unique_ptr<RelayBuffer> relay_buffer = take_buffer();
    char* data = relay_buffer->data();
    constexpr std::size_t kDataSize = sizeof(RelayBuffer);
    struct GiveBack {
      Worker& w;
      std::unique_ptr<RelayBuffer>& b;
      ~GiveBack() { w.give_buffer(std::move(b)); }
    } give_back{*this, relay_buffer};
    // Body bytes already read with the head are parsed in place, without an I/O round.
    auto parse_buffered = [&](boost::system::error_code& ec) -> std::size_t {
      res.body().data = data;
      res.body().size = kDataSize;
      while (buf.size() > 0 && !p.is_done() && res.body().size > 0) {
        std::size_t n = p.put(buf.data(), ec);
        buf.consume(n);
        if (ec == http::error::need_more || ec == http::error::need_buffer) {
          ec = {};
          break;
        }
        if (ec || n == 0) break;
      }
      return kDataSize - res.body().size;
    };
    std::size_t got = 0;
    while (!p.is_done() && got == 0) {
      boost::system::error_code rec;
      got = parse_buffered(rec);
      if (!rec && (got > 0 || p.is_done())) break;
      if (!rec) {  // parsed on the next turn
        auto space = buf.prepare(kReadChunk);
        auto [ec, rn] = co_await up.read_some(static_cast<char*>(space.data()), space.size());
        buf.commit(rn);
        rec = ec == asio::error::eof ? at_eof(p) : ec;
      }
      if (rec && rec != http::error::need_buffer) {
        if (up.expired()) {
          if (cfg.first_token_timeout_seconds > 0) sh_.first_token_timeouts.fetch_add(1);
          co_return Attempt{Outcome::kTimeout,
                            fmt::format("sent no first token within {} s", first_byte)};
        }
        co_return Attempt{Outcome::kFailed, "failed before the first byte: " + rec.message()};
      }
    }
    // Committed: from here on bytes reach the client and nothing fails over.
    UsageScan usage(call.inference, res[http::field::content_type]);
    bool upstream_keep = p.keep_alive();
    bool keep_alive = call.keep_alive && !sh_.stopping;
    // Unknown length (an upstream closing to end the body) is chunked for the client, or
    // closes the connection for an HTTP/1.0 client; HEAD answers carry no body.
    bool chunked = (res.chunked() || (!res.has_content_length() && !p.is_done())) &&
                   req.method() != http::verb::head;
    if (chunked && call.http10) {
      chunked = false;
      keep_alive = false;
    }
    std::string& head = conn->head;
    response_head(res, head, e.route_prefix, reason, keep_alive, call.http10, chunked);
    usage.feed(data, got, p.is_done());
    client.sock.set_deadline(from_seconds(cfg.client_timeout_seconds));
    auto cec = (co_await send_piece(client, head, chunked, data, got, p.is_done())).ec;
    bool broken = false;
    while (!cec && !p.is_done()) {
      boost::system::error_code rec;
      got = parse_buffered(rec);
      if (!rec && got == 0 && !p.is_done()) {
        up.set_deadline(from_seconds(cfg.response_timeout_seconds));
        auto space = buf.prepare(kReadChunk);
        auto [ec, rn] = co_await up.read_some(static_cast<char*>(space.data()), space.size());
        buf.commit(rn);
        rec = ec == asio::error::eof ? at_eof(p) : ec;
      }
      if (rec && rec != http::error::need_buffer) {
        broken = true;  // the upstream broke mid-response: the client sees a cut stream
        break;
      }
      got = kDataSize - res.body().size;
      if (got == 0 && !p.is_done()) continue;
      usage.feed(data, got, p.is_done());
      client.sock.set_deadline(from_seconds(cfg.client_timeout_seconds));
      head.clear();
      cec = (co_await send_piece(client, head, chunked, data, got, p.is_done())).ec;
    }
    if (broken) {
      sh_.broken_streams.fetch_add(1, std::memory_order_relaxed);
      e.failed(true);
      co_return Attempt{Outcome::kDone, "", false};
    }
    if (cec) co_return Attempt{Outcome::kClientGone, ""};
    e.succeeded();
    auto [in, out] = usage.finish();
    e.st->input_tokens.fetch_add(in, std::memory_order_relaxed);
    e.st->output_tokens.fetch_add(out, std::memory_order_relaxed);
    if (e.cloud && (in || out)) {
      sh_.add_spend(static_cast<double>(in) / 1000 * e.cfg.usd_per_1k_input +
                    static_cast<double>(out) / 1000 * e.cfg.usd_per_1k_output);
    }
    auto& idle = pool_of(e);
    if (upstream_keep && p.is_done() && buf.size() == 0 && idle.conns.size() < 64)
      idle.conns.push_back(std::move(conn));
    co_return Attempt{Outcome::kDone, "", keep_alive};
  }

  // Active health checks of local endpoints, from worker 0's loop.
  Task<void> health_loop() {
    loop::Sleeper timer(loop_);
    while (!sh_.stopping) {
      SnapshotPtr snap = snap_;
      const GatewayHealth& h = snap->cfg.health;
      if (h.enabled) {
        for (const auto& e : snap->local) loop_.spawn(check(snap, e));
      }
      co_await timer.until(loop_.now() + from_seconds(h.enabled ? h.interval_seconds : 1.0));
    }
  }

  Task<void> check(SnapshotPtr snap, std::shared_ptr<const Endpoint> e) {
    const GatewayHealth& h = snap->cfg.health;
    std::string err;
    auto conn = co_await connect(*e, h.timeout_seconds, err);
    int status = 0;
    std::string retry_after;
    if (conn) {
      std::string req = "GET ";
      req += h.path;
      req += " HTTP/1.1\r\nHost: ";
      req += e->host_header;
      req += "\r\nConnection: close\r\n\r\n";
      conn->s->set_deadline(from_seconds(h.timeout_seconds));
      auto [wec, wn] = co_await conn->s->write_all(req);
      http::response_parser<http::string_body> p;
      p.body_limit(64 * 1024);
      beast::flat_buffer buf;
      if (!wec && !(co_await read_until(*conn->s, buf, p, kAllDone)).ec) {
        status = static_cast<int>(p.get().result_int());
        retry_after = std::string(p.get()[http::field::retry_after]);
      }
    }
    if (status == 503 && !retry_after.empty()) {
      e->busy_for(retry_after_seconds(retry_after));  // loading: busy, not dead
      e->checked(true, h);
      co_return;
    }
    e->checked(status >= 200 && status < 300, h);
  }

  // One request per connection, read by the strict reader within small limits.
  Task<void> admin_session(int fd) {
    Stream stream(loop_, fd);
    http1::RequestReader reader({8 * 1024, 64 * 1024});
    std::array<char, 4096> in{};
    stream.set_deadline(std::chrono::seconds(10));
    while (!reader.done() && !reader.failed()) {
      auto [ec, n] = co_await stream.read_some(in.data(), in.size());
      if (ec == asio::error::eof) reader.eof();
      if (ec && (ec != asio::error::eof || reader.closed())) co_return;
      reader.parse(std::string_view(in.data(), n));  // the rest of a pipeline is dropped
    }
    http::response<http::string_body> res{http::status::ok, 11};
    std::string_view target = reader.target();
    if (reader.failed()) {
      answer(res, reader.error().status, json_error(reader.error().reason));
    } else if (target == "/healthz") {
      int up = 0;
      for (const auto& e : snap_->local) up += e->up();
      answer(res, 200,
             boost::json::serialize(boost::json::object{
                 {"status", "ok"}, {"local_up", up}, {"generation", snap_->generation}}) +
                 "\n");
    } else if (target == "/metrics") {
      answer(res, 200, metrics_text(), "text/plain; version=0.0.4; charset=utf-8");
    } else {
      answer(res, 404, json_error("admin routes: /healthz, /metrics"));
    }
    res.keep_alive(false);
    res.prepare_payload();
    std::string wire = to_wire(res);
    co_await stream.write_all(wire);
    stream.shutdown_send();
  }

  std::string metrics_text() {
    std::string out;
    const Snapshot& snap = *snap_;
    auto per_endpoint = [&](const char* name, const char* type, const char* help, auto value) {
      out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
      for (const auto* pool : {&snap.local, &snap.cloud}) {
        for (const auto& e : *pool) {
          out += fmt::format("{}{{environment=\"{}\",endpoint=\"{}\"}} {}\n", name,
                             e->cloud ? "cloud" : "local", e->cfg.name, value(*e));
        }
      }
    };
    per_endpoint("hylab_gateway_upstream_requests_total", "counter",
                 "Requests sent to each endpoint",
                 [](const Endpoint& e) { return e.st->requests.load(); });
    per_endpoint("hylab_gateway_upstream_failures_total", "counter",
                 "Failed exchanges with each endpoint",
                 [](const Endpoint& e) { return e.st->failures.load(); });
    per_endpoint("hylab_gateway_inflight", "gauge", "Requests in flight to each endpoint",
                 [](const Endpoint& e) { return e.st->inflight.load(); });
    per_endpoint("hylab_gateway_capacity", "gauge",
                 "Slots of each endpoint: max_inflight, or the adaptive limit under it",
                 [](const Endpoint& e) { return e.capacity(); });
    per_endpoint("hylab_gateway_endpoint_up", "gauge",
                 "1 when the endpoint is healthy and not ejected",
                 [](const Endpoint& e) { return e.up() ? 1 : 0; });
    per_endpoint("hylab_gateway_endpoint_busy", "gauge",
                 "1 while the endpoint is busy (it answered 503 with Retry-After)",
                 [](const Endpoint& e) { return e.busy() ? 1 : 0; });
    per_endpoint("hylab_gateway_input_tokens_total", "counter",
                 "Prompt tokens from responses' usage",
                 [](const Endpoint& e) { return e.st->input_tokens.load(); });
    per_endpoint("hylab_gateway_output_tokens_total", "counter",
                 "Completion tokens from responses' usage",
                 [](const Endpoint& e) { return e.st->output_tokens.load(); });
    struct Counter {
      const char* name;
      const char* help;
      std::atomic<std::uint64_t> Shared::*value;
    };
    static const Counter kCounters[] = {
        {"hylab_gateway_overflow_total",
         "Requests sent to the cloud because local endpoints were at capacity", &Shared::overflow},
        {"hylab_gateway_failover_total",
         "Requests sent to the cloud because local endpoints were down", &Shared::failover},
        {"hylab_gateway_model_routed_total",
         "Requests sent to the cloud because no local endpoint serves their model",
         &Shared::by_model},
        {"hylab_gateway_sensitive_refused_total",
         "Sensitive requests answered 503 instead of going to the cloud",
         &Shared::sensitive_refused},
        {"hylab_gateway_sensitive_to_cloud_total",
         "Sensitive requests sent to the cloud (always 0)", &Shared::sensitive_to_cloud},
        {"hylab_gateway_sensitive_to_cloud_blocked_total",
         "Requests to a cloud endpoint stopped by the last check of the bytes sent (a content "
         "pattern matched)",
         &Shared::sensitive_blocked},
        {"hylab_gateway_rejected_total", "Requests the gateway answered itself with an error",
         &Shared::rejected},
        {"hylab_gateway_budget_refused_total",
         "Requests refused because the daily cloud budget was spent", &Shared::budget_refused},
        {"hylab_gateway_retries_total", "Requests sent again to another endpoint after a send",
         &Shared::retries},
        {"hylab_gateway_retry_budget_exhausted_total",
         "Retries not made because the retry budget was spent", &Shared::retry_budget_exhausted},
        {"hylab_gateway_busy_total", "Upstream answers of 503 with Retry-After (busy)",
         &Shared::busy_answers},
        {"hylab_gateway_first_token_timeouts_total",
         "Upstreams that sent no first token within timeouts.first_token",
         &Shared::first_token_timeouts},
        {"hylab_gateway_queued_total", "Requests that waited for a local slot", &Shared::queued},
        {"hylab_gateway_broken_streams_total",
         "Responses cut because the upstream failed after the first byte", &Shared::broken_streams},
        {"hylab_gateway_reloads_total", "Configuration reloads applied (SIGHUP)", &Shared::reloads},
        {"hylab_gateway_reload_failures_total",
         "Configuration reloads refused (the old configuration stays)", &Shared::reload_failures},
    };
    for (const auto& c : kCounters) {
      out += fmt::format("# HELP {} {}\n# TYPE {} counter\n{} {}\n", c.name, c.help, c.name, c.name,
                         (sh_.*c.value).load());
    }
    auto value = [&](const char* name, const char* type, const char* help, double v) {
      out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, v);
    };
    value("hylab_gateway_requests_active", "gauge", "Requests being handled", sh_.active.load());
    value("hylab_gateway_connections", "gauge", "Open client connections", sh_.connections.load());
    value("hylab_gateway_connections_evicted_total", "counter",
          "Idle or slow client connections closed to stay within limits.max_connections",
          static_cast<double>(sh_.evicted.load()));
    value("hylab_gateway_internal_errors_total", "counter",
          "Connections ended by an exception inside the gateway (each is logged)",
          static_cast<double>(sh_.internal_errors()));
    value("hylab_gateway_cloud_spend_usd_total", "counter", "Cloud spend from usage and prices",
          static_cast<double>(sh_.spend_total_micro_usd.load()) / 1e6);
    out +=
        "# HELP hylab_gateway_request_duration_seconds Time from a request read to its answer "
        "written\n"
        "# TYPE hylab_gateway_request_duration_seconds histogram\n";
    const char* envs[] = {"local", "cloud", "none"};
    for (int k = 0; k < 3; ++k) {
      const Histogram& h = sh_.latency[k];
      std::uint64_t cumulative = 0;
      for (std::size_t i = 0; i <= Histogram::kBounds.size(); ++i) {
        cumulative += h.buckets[i].load();
        std::string le =
            i < Histogram::kBounds.size() ? fmt::format("{}", Histogram::kBounds[i]) : "+Inf";
        out += fmt::format(
            "hylab_gateway_request_duration_seconds_bucket{{environment=\"{}\",le=\"{}\"}} {}\n",
            envs[k], le, cumulative);
      }
      out += fmt::format("hylab_gateway_request_duration_seconds_sum{{environment=\"{}\"}} {}\n",
                         envs[k], static_cast<double>(h.sum_ns.load()) / 1e9);
      out += fmt::format("hylab_gateway_request_duration_seconds_count{{environment=\"{}\"}} {}\n",
                         envs[k], h.count.load());
    }
    value("hylab_gateway_cloud_spend_today_usd", "gauge", "Cloud spend of the current UTC day",
          sh_.spent_today());
    return out;
  }

  using RelayBuffer = std::array<char, 16384>;
  std::unique_ptr<RelayBuffer> take_buffer() {
    if (free_buffers_.empty()) return std::make_unique<RelayBuffer>();
    auto b = std::move(free_buffers_.back());
    free_buffers_.pop_back();
    return b;
  }
  void give_buffer(std::unique_ptr<RelayBuffer> b) {
    if (b && free_buffers_.size() < 256) free_buffers_.push_back(std::move(b));
  }
  std::vector<std::unique_ptr<RelayBuffer>> free_buffers_;

  struct Pool {
    std::shared_ptr<EndpointState> state;  // held, so its address is never reused meanwhile
    std::vector<std::unique_ptr<Conn>> conns;
  };
  Pool& pool_of(const Endpoint& e) {
    Pool& p = pools_[e.st.get()];
    if (!p.state) p.state = e.st;
    return p;
  }

  std::size_t connection_share() const {
    auto total = static_cast<std::size_t>(snap_->cfg.max_connections);
    auto n = static_cast<std::size_t>(workers_);
    return (total + n - 1) / n;
  }

  Shared& sh_;
  int workers_;
  // One thread per loop; every socket and timer of a loop is used only on its own thread
  // (cross-thread work arrives by post). Declared before everything that holds sockets.
  loop::Loop loop_;
  std::unique_ptr<Stream> listener_;
  std::unique_ptr<Stream> admin_listener_;
  SnapshotPtr snap_;
  // Idle keep-alive connections per endpoint state (a state outlives its snapshots
  // while the endpoint stays; pools of endpoints that left are dropped on adoption).
  std::unordered_map<const EndpointState*, Pool> pools_;
  std::deque<loop::Sleeper*> waiters_;  // requests waiting for a slot
  ConnectionTable connections_;         // this loop's client connections, capped
  loop::Sleeper* room_ = nullptr;       // the accept loop, while it waits for room
};

Result<std::shared_ptr<Endpoint>> make_endpoint(const GatewayEndpoint& cfg, bool cloud,
                                                const Snapshot* previous) {
  auto e = std::make_shared<Endpoint>();
  e->cfg = cfg;
  e->cloud = cloud;
  std::string rest = cfg.url.substr(cfg.url.find("://") + 3);
  bool https = cfg.url.rfind("https://", 0) == 0;
  std::string authority = rest.substr(0, rest.find('/'));
  if (auto slash = rest.find('/'); slash != std::string::npos) {
    e->base_path = rest.substr(slash);
    while (!e->base_path.empty() && e->base_path.back() == '/') e->base_path.pop_back();
  }
  auto colon = authority.rfind(':');
  if (colon != std::string::npos && authority.find(']') != std::string::npos &&
      colon < authority.find(']')) {
    colon = std::string::npos;  // [v6] without a port
  }
  e->host = colon == std::string::npos ? authority : authority.substr(0, colon);
  e->port = colon == std::string::npos ? (https ? "443" : "80") : authority.substr(colon + 1);
  if (e->host.size() > 2 && e->host.front() == '[') e->host = e->host.substr(1, e->host.size() - 2);
  e->host_header = authority;
  e->route_prefix = fmt::format("{}; endpoint={}; reason=", cloud ? "cloud" : "local", cfg.name);
  if (https) {
    e->tls = std::make_shared<ssl::context>(ssl::context::tls_client);
    boost::system::error_code ec;
    if (cfg.ca_file.empty()) {
      e->tls->set_default_verify_paths(ec);
    } else {
      e->tls->load_verify_file(cfg.ca_file, ec);
    }
    if (ec) {
      return Error{
          Errc::kInvalidInput,
          fmt::format("gateway endpoint '{}': cannot load the CA certificates {}: {}", cfg.name,
                      cfg.ca_file.empty() ? "(system)" : cfg.ca_file, ec.message())};
    }
    e->tls->set_verify_mode(ssl::verify_peer);
  }
  if (!cfg.api_key_env.empty()) {
    const char* key = std::getenv(cfg.api_key_env.c_str());
    if (!key || !*key) {
      return Error{Errc::kInvalidInput,
                   fmt::format("gateway endpoint '{}': ${} is not set (its API key)", cfg.name,
                               cfg.api_key_env)};
    }
    e->api_key = key;
  }
  asio::io_context ioc;
  tcp::resolver resolver(ioc);
  boost::system::error_code ec;
  auto results = resolver.resolve(e->host, e->port, ec);
  if (ec)
    return Error{Errc::kIo, fmt::format("gateway endpoint '{}': cannot resolve {}: {}", cfg.name,
                                        e->host, ec.message())};
  for (const auto& r : results) {
    loop::Address a;
    std::memcpy(&a.addr, r.endpoint().data(), r.endpoint().size());
    a.len = static_cast<socklen_t>(r.endpoint().size());
    e->addresses.push_back(a);
  }
  // The same endpoint (name, URL, side) keeps its slots, health and counters.
  if (previous) {
    for (const auto& old : cloud ? previous->cloud : previous->local) {
      if (old->cfg.name == cfg.name && old->cfg.url == cfg.url) e->st = old->st;
    }
  }
  if (!e->st) e->st = std::make_shared<EndpointState>();
  return e;
}

Result<SnapshotPtr> build_snapshot(const GatewayConfig& g, const Snapshot* previous) {
  auto snap = std::make_shared<Snapshot>();
  snap->cfg = g;
  snap->generation = previous ? previous->generation + 1 : 1;
  for (auto [list, pool, cloud] :
       {std::tuple{&g.local, &snap->local, false}, std::tuple{&g.cloud, &snap->cloud, true}}) {
    for (const auto& ec : *list) {
      auto ep = make_endpoint(ec, cloud, previous);
      if (!ep) return ep.error();
      if (!g.adaptive.enabled || cloud) (*ep)->st->limit.store(0);
      snap->any_model_lists = snap->any_model_lists || !ec.models.empty();
      pool->push_back(std::move(*ep));
    }
  }
  for (const auto& var : g.sensitive_client_key_envs) {
    const char* key = std::getenv(var.c_str());
    if (!key || !*key) {
      return Error{Errc::kInvalidInput,
                   fmt::format("gateway.privacy.client_key_envs: ${} is not set", var)};
    }
    snap->privacy.client_keys.emplace_back(key);
  }
  snap->privacy.marking_header = g.sensitive_header;
  snap->privacy.routes = g.sensitive_routes;
  snap->privacy.patterns = g.sensitive_patterns;
  snap->privacy.max_body_bytes = g.max_body_bytes;
  return SnapshotPtr(std::move(snap));
}

std::pair<std::string, std::uint16_t> split_host_port(const std::string& hp) {
  auto colon = hp.rfind(':');
  return {hp.substr(0, colon), static_cast<std::uint16_t>(std::stoi(hp.substr(colon + 1)))};
}

}  // namespace

int run_gateway(const Config& cfg, const GatewayOptions& opts, std::ostream& out,
                std::ostream& err) {
  const GatewayConfig& g = cfg.gateway;
  if (!g.present) {
    err << fmt::format("error: {} has no gateway: section (see the README for an example)\n",
                       cfg.source);
    return 2;
  }
  auto first = build_snapshot(g, nullptr);
  if (!first) {
    err << "error: " << first.error().message << "\n";
    return 2;
  }
  SnapshotPtr current = *first;
  Shared sh;
  int threads = g.threads > 0 ? g.threads
                              : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::unique_ptr<Worker>> workers;
  workers.reserve(static_cast<std::size_t>(threads));
  for (int i = 0; i < threads; ++i) {
    workers.push_back(std::make_unique<Worker>(sh, threads));
    workers.back()->adopt_now(current);
    workers.back()->loop().set_busy_poll(std::chrono::microseconds(g.busy_poll_us));
    sh.loops.push_back(&workers.back()->loop());
  }
  raise_open_files_limit();
  auto [host, port] = split_host_port(g.listen);
  std::uint16_t bound = 0;
  for (auto& w : workers) {
    auto p = w->start(host, bound ? bound : port);  // port 0: the first picks, the rest share it
    if (!p) {
      err << "error: " << p.error().message << "\n";
      return 1;
    }
    bound = *p;
  }
  auto [ahost, aport] = split_host_port(g.admin);
  auto admin_port = workers.front()->start_admin(ahost, aport);
  if (!admin_port) {
    err << "error: admin " << admin_port.error().message << "\n";
    return 1;
  }
  workers.front()->start_health_checks();
  out << fmt::format(
             "hylab gateway: listening on http://{}:{} ({} threads), admin on http://{}:{}\n", host,
             bound, threads, ahost, *admin_port)
      << fmt::format("  local: {} endpoint(s), cloud: {} endpoint(s), sensitive header: {}\n",
                     current->local.size(), current->cloud.size(), g.sensitive_header)
      << std::flush;
  if (opts.port_file) {
    std::string tmp = *opts.port_file + ".tmp";
    std::ofstream(tmp) << boost::json::serialize(
                              boost::json::object{{"listen", bound}, {"admin", *admin_port}})
                       << "\n";
    std::rename(tmp.c_str(), opts.port_file->c_str());
  }
  // Signals, the drain and reloads run on this thread's own context; the loops get their
  // part by post.
  asio::io_context control(1);
  // SIGTERM/SIGINT: stop accepting, let requests in flight finish (answers say
  // `Connection: close`) for up to the drain time, then stop. A second signal stops at once.
  asio::signal_set signals(control, SIGINT, SIGTERM);
  asio::steady_timer drain(control);
  auto stop_all = [&] {
    for (auto& w : workers) w->loop().stop();
    control.stop();
  };
  std::function<void()> wait_drained;
  auto drain_deadline = Clock::now();
  wait_drained = [&] {
    if (sh.active.load() == 0 || Clock::now() >= drain_deadline) {
      stop_all();
      return;
    }
    drain.expires_after(std::chrono::milliseconds(10));
    drain.async_wait([&](boost::system::error_code) { wait_drained(); });
  };
  std::function<void(boost::system::error_code, int)> on_stop = [&](boost::system::error_code ec,
                                                                    int) {
    if (ec) return;
    if (sh.stopping.exchange(true)) {
      stop_all();
      return;
    }
    out << fmt::format("hylab gateway: stopping; {} request(s) in flight get up to {} s\n",
                       sh.active.load(), current->cfg.drain_timeout_seconds)
        << std::flush;
    for (auto& w : workers) w->stop_accepting();
    signals.async_wait(on_stop);
    drain_deadline = Clock::now() + from_seconds(current->cfg.drain_timeout_seconds);
    wait_drained();
  };
  signals.async_wait(on_stop);
  // SIGHUP: read the file again and swap the snapshot on every loop; connections and
  // requests in flight carry on. A bad file keeps the running configuration.
  asio::signal_set hup(control, SIGHUP);
  std::function<void(boost::system::error_code, int)> on_hup = [&](boost::system::error_code ec,
                                                                   int) {
    if (ec) return;
    hup.async_wait(on_hup);
    Diagnostics diag;
    auto next = load_config_file(cfg.source, diag);
    if (!next || diag.has_errors() || !next->gateway.present) {
      sh.reload_failures.fetch_add(1);
      err << "hylab gateway: reload refused, the running configuration stays:\n"
          << diag.str() << (next && !next->gateway.present ? "no gateway: section\n" : "")
          << std::flush;
      return;
    }
    const GatewayConfig& ng = next->gateway;
    if (ng.listen != current->cfg.listen || ng.admin != current->cfg.admin ||
        ng.threads != current->cfg.threads) {
      err << "hylab gateway: listen, admin and threads change only at a restart; the rest "
             "is applied\n";
    }
    auto snap = build_snapshot(ng, current.get());
    if (!snap) {
      sh.reload_failures.fetch_add(1);
      err << "hylab gateway: reload refused, the running configuration stays: "
          << snap.error().message << "\n"
          << std::flush;
      return;
    }
    current = *snap;
    for (auto& w : workers) w->adopt(current);
    sh.reloads.fetch_add(1);
    out << fmt::format(
               "hylab gateway: reloaded {} (generation {}): local {} endpoint(s), cloud {}\n",
               cfg.source, current->generation, current->local.size(), current->cloud.size())
        << std::flush;
  };
  hup.async_wait(on_hup);
  std::vector<std::thread> pool;
  for (auto& w : workers) pool.emplace_back([&w] { w->loop().run(); });
  control.run();
  for (auto& t : pool) t.join();
  out << "hylab gateway: stopped\n";
  return 0;
}

}  // namespace hylab::gateway
