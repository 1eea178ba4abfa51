#include "gateway/gateway.h"

#include <fcntl.h>
#include <fmt/format.h>

#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <thread>
#include <tuple>

#include "common/text.h"

namespace hylab::gateway {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using asio::awaitable;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
using Clock = std::chrono::steady_clock;
using ReusePort = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

namespace {

Clock::duration secs(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

std::int64_t now_ns() { return Clock::now().time_since_epoch().count(); }

// One upstream, shared by every loop: its slots and counters are atomics.
struct Endpoint {
  GatewayEndpoint cfg;
  bool cloud = false;
  std::string host;
  std::string port;
  std::string host_header;
  std::string api_key;
  std::vector<tcp::endpoint> addresses;  // resolved once at start
  std::atomic<int> inflight{0};
  std::atomic<std::int64_t> down_until{0};
  std::atomic<int> consecutive_failures{0};
  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> failures{0};
  std::atomic<std::uint64_t> input_tokens{0};
  std::atomic<std::uint64_t> output_tokens{0};

  bool down() const { return now_ns() < down_until.load(std::memory_order_relaxed); }
  bool try_acquire() {
    int cur = inflight.load(std::memory_order_relaxed);
    while (cur < cfg.max_inflight) {
      if (inflight.compare_exchange_weak(cur, cur + 1, std::memory_order_acq_rel)) return true;
    }
    return false;
  }
  void release() { inflight.fetch_sub(1, std::memory_order_acq_rel); }
  // Passive ejection with back-off: 1 s, 2 s, 4 s ... up to 30 s while failures continue.
  void failed() {
    failures.fetch_add(1, std::memory_order_relaxed);
    int n = consecutive_failures.fetch_add(1, std::memory_order_relaxed);
    double backoff = std::min(30.0, static_cast<double>(1 << std::min(n, 5)));
    down_until.store(now_ns() + secs(backoff).count(), std::memory_order_relaxed);
  }
  void succeeded() { consecutive_failures.store(0, std::memory_order_relaxed); }
};

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

struct Shared {
  explicit Shared(const GatewayConfig& c) : cfg(c) {}
  const GatewayConfig& cfg;
  std::vector<std::unique_ptr<Endpoint>> local;
  std::vector<std::unique_ptr<Endpoint>> cloud;
  std::atomic<std::uint64_t> overflow{0};
  std::atomic<std::uint64_t> failover{0};
  std::atomic<std::uint64_t> sensitive_refused{0};
  std::atomic<std::uint64_t> sensitive_to_cloud{0};  // must stay 0: exported to prove it
  std::atomic<std::uint64_t> rejected{0};            // answered by the gateway itself (4xx/5xx)
  std::atomic<std::uint64_t> budget_refused{0};
  Histogram latency[3];  // by where the request went: local, cloud, none (answered by the gateway)
  // Cloud spend of the current UTC day, in micro-dollars; reset when the day changes.
  std::atomic<std::int64_t> spend_day{0};
  std::atomic<std::int64_t> spend_micro_usd{0};
  std::atomic<std::uint64_t> spend_total_micro_usd{0};

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
  std::atomic<bool> stopping{false};
};

// The least-loaded endpoint (in-flight per weight) that is up and has a free slot,
// acquired; or nothing.
Endpoint* pick(std::vector<std::unique_ptr<Endpoint>>& pool,
               const std::vector<Endpoint*>& exclude) {
  // One pass for the least loaded, no allocation on the request path; if another loop
  // took its last slot in between, look again (each retry means one slot fewer overall).
  for (;;) {
    Endpoint* best = nullptr;
    for (auto& e : pool) {
      if (e->down() || e->inflight.load() >= e->cfg.max_inflight ||
          std::find(exclude.begin(), exclude.end(), e.get()) != exclude.end()) {
        continue;
      }
      if (!best || e->inflight.load() * best->cfg.weight < best->inflight.load() * e->cfg.weight) {
        best = e.get();
      }
    }
    if (!best) return nullptr;
    if (best->try_acquire()) return best;
  }
}

std::string json_error(std::string_view message) {
  return boost::json::serialize(boost::json::object{{"error", message}}) + "\n";
}

enum class Outcome { kOk, kNotSent, kFailedAfterSend, kTimeout };

class Worker {
 public:
  explicit Worker(Shared& sh) : sh_(sh), acceptor_(ioc_), admin_(ioc_) {}

  asio::io_context& ioc() { return ioc_; }

  Result<std::uint16_t> listen(const std::string& host, std::uint16_t port, tcp::acceptor& a) {
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(host, ec);
    if (ec)
      return Error{Errc::kInvalidInput, fmt::format("listen address '{}': {}", host, ec.message())};
    tcp::endpoint ep(addr, port);
    a.open(ep.protocol(), ec);
    if (!ec) a.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) a.set_option(ReusePort(true), ec);
    if (!ec) a.bind(ep, ec);
    if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
    if (ec)
      return Error{Errc::kIo, fmt::format("cannot listen on {}:{}: {}", host, port, ec.message())};
    ::fcntl(a.native_handle(), F_SETFD, FD_CLOEXEC);
    return a.local_endpoint().port();
  }

  Result<std::uint16_t> start(const std::string& host, std::uint16_t port) {
    auto p = listen(host, port, acceptor_);
    if (p) asio::co_spawn(ioc_, accept_loop(acceptor_, false), asio::detached);
    return p;
  }

  Result<std::uint16_t> start_admin(const std::string& host, std::uint16_t port) {
    auto p = listen(host, port, admin_);
    if (p) asio::co_spawn(ioc_, accept_loop(admin_, true), asio::detached);
    return p;
  }

 private:
  awaitable<void> accept_loop(tcp::acceptor& acceptor, bool admin) {
    for (;;) {
      auto [ec, sock] = co_await acceptor.async_accept(kTuple);
      if (ec) {
        if (sh_.stopping || ec == asio::error::operation_aborted) co_return;
        asio::steady_timer backoff(ioc_, std::chrono::milliseconds(100));
        co_await backoff.async_wait(kTuple);
        continue;
      }
      sock.set_option(tcp::no_delay(true));
      if (admin) {
        asio::co_spawn(ioc_, admin_session(beast::tcp_stream(std::move(sock))), asio::detached);
      } else {
        asio::co_spawn(ioc_, session(beast::tcp_stream(std::move(sock))), asio::detached);
      }
    }
  }

  static void answer(http::response<http::string_body>& res, int status, std::string body,
                     const char* type = "application/json") {
    res.result(static_cast<http::status>(status));
    res.set(http::field::content_type, type);
    res.body() = std::move(body);
  }

  awaitable<void> session(beast::tcp_stream client) {
    const GatewayConfig& cfg = sh_.cfg;
    beast::flat_buffer buffer;
    bool first = true;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(static_cast<std::uint32_t>(cfg.max_header_bytes));
      parser.body_limit(cfg.max_body_bytes);
      client.expires_after(secs(first ? cfg.client_timeout_seconds : cfg.idle_timeout_seconds));
      first = false;
      auto [ec, n] = co_await http::async_read_header(client, buffer, parser, kTuple);
      if (!ec) {
        // A slow client gets the client timeout for the whole request, not per byte.
        client.expires_after(secs(cfg.client_timeout_seconds));
        std::tie(ec, n) = co_await http::async_read(client, buffer, parser, kTuple);
      }
      if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
          ec == asio::error::eof || ec == asio::error::connection_reset ||
          ec == asio::error::operation_aborted) {
        co_return;
      }
      http::response<http::string_body> res{http::status::ok, 11};
      res.set(http::field::server, "hylab-gateway");
      if (ec) {
        sh_.rejected.fetch_add(1, std::memory_order_relaxed);
        if (ec == http::error::body_limit) {
          answer(res, 413,
                 json_error(fmt::format("request body over the gateway's limit of {} bytes",
                                        cfg.max_body_bytes)));
        } else if (ec == http::error::header_limit) {
          answer(res, 431,
                 json_error(fmt::format("request headers over the gateway's limit of {} bytes",
                                        cfg.max_header_bytes)));
        } else {
          answer(res, 400, json_error("malformed HTTP request: " + ec.message()));
        }
        res.keep_alive(false);
        res.prepare_payload();
        client.expires_after(secs(cfg.client_timeout_seconds));
        co_await http::async_write(client, res, kTuple);
        boost::system::error_code sec;
        client.socket().shutdown(tcp::socket::shutdown_send, sec);
        co_return;
      }
      http::request<http::string_body> req = parser.release();
      bool keep_alive = req.keep_alive();
      auto t0 = Clock::now();
      co_await route(req, res);
      std::string_view route_to = res["X-Hylab-Route"];
      sh_.latency[route_to.starts_with("local")   ? 0
                  : route_to.starts_with("cloud") ? 1
                                                  : 2]
          .observe(Clock::now() - t0);
      res.keep_alive(keep_alive && !sh_.stopping);
      res.prepare_payload();
      client.expires_after(secs(cfg.client_timeout_seconds));
      auto [wec, wn] = co_await http::async_write(client, res, kTuple);
      if (wec || !res.keep_alive()) {
        boost::system::error_code sec;
        client.socket().shutdown(tcp::socket::shutdown_send, sec);
        co_return;
      }
    }
  }

  // The hybrid policy for one request.
  awaitable<void> route(http::request<http::string_body>& req,
                        http::response<http::string_body>& res) {
    const GatewayConfig& cfg = sh_.cfg;
    bool sensitive = iequals(std::string(req[cfg.sensitive_header]), "sensitive");
    req.erase(cfg.sensitive_header);  // a marking for the gateway, not for upstreams
    std::vector<Endpoint*> tried;
    bool local_failed = false;
    for (;;) {
      Endpoint* e = pick(sh_.local, tried);
      if (!e) break;
      Outcome o = co_await forward(*e, req, res);
      e->release();
      if (o == Outcome::kOk) {
        e->succeeded();
        count_usage(*e, res);
        res.set("X-Hylab-Route", fmt::format("local; endpoint={}; reason={}", e->cfg.name,
                                             local_failed ? "retry" : "local-first"));
        co_return;
      }
      e->failed();
      if (o != Outcome::kNotSent) {
        answer(res, o == Outcome::kTimeout ? 504 : 502,
               json_error(fmt::format(
                   "local endpoint '{}' {} after the request was sent; not retried, as it may "
                   "have been processed",
                   e->cfg.name, o == Outcome::kTimeout ? "did not answer in time" : "failed")));
        res.set("X-Hylab-Route", fmt::format("local; endpoint={}; reason=error", e->cfg.name));
        co_return;
      }
      local_failed = true;
      tried.push_back(e);
    }
    bool any_up = false;
    for (auto& l : sh_.local) any_up = any_up || !l->down();
    std::string why = local_failed || !any_up ? "failover" : "overflow";
    if (sensitive) {
      sh_.sensitive_refused.fetch_add(1, std::memory_order_relaxed);
      answer(res, 503,
             json_error(fmt::format(
                 "sensitive request: it never leaves the lab, and every local endpoint is {}; "
                 "retry shortly",
                 why == "overflow" ? "at capacity" : "down")));
      res.set(http::field::retry_after, "1");
      res.set("X-Hylab-Route", "none; reason=sensitive");
      co_return;
    }
    if (cfg.daily_cloud_budget_usd > 0 && !sh_.cloud.empty() &&
        sh_.spent_today() >= cfg.daily_cloud_budget_usd) {
      sh_.budget_refused.fetch_add(1, std::memory_order_relaxed);
      auto now = std::chrono::system_clock::now().time_since_epoch();
      auto to_midnight =
          86400 - std::chrono::duration_cast<std::chrono::seconds>(now).count() % 86400;
      answer(res, 429,
             json_error(fmt::format(
                 "the daily cloud budget of ${} is spent (${:.2f} today): overflow to the "
                 "cloud is off until 00:00 UTC, and every local endpoint is {}",
                 cfg.daily_cloud_budget_usd, sh_.spent_today(),
                 why == "overflow" ? "at capacity" : "down")));
      res.set(http::field::retry_after, std::to_string(to_midnight));
      res.set("X-Hylab-Route", "none; reason=budget");
      co_return;
    }
    rewrite_model(req);
    std::vector<Endpoint*> tried_cloud;
    for (;;) {
      Endpoint* e = pick(sh_.cloud, tried_cloud);
      if (!e) break;
      if (!e->api_key.empty()) req.set(http::field::authorization, "Bearer " + e->api_key);
      Outcome o = co_await forward(*e, req, res);
      e->release();
      if (o == Outcome::kOk) {
        e->succeeded();
        count_usage(*e, res);
        (why == "overflow" ? sh_.overflow : sh_.failover).fetch_add(1, std::memory_order_relaxed);
        res.set("X-Hylab-Route", fmt::format("cloud; endpoint={}; reason={}", e->cfg.name, why));
        co_return;
      }
      e->failed();
      if (o != Outcome::kNotSent) {
        answer(res, o == Outcome::kTimeout ? 504 : 502,
               json_error(fmt::format(
                   "cloud endpoint '{}' {} after the request was sent; not retried", e->cfg.name,
                   o == Outcome::kTimeout ? "did not answer in time" : "failed")));
        res.set("X-Hylab-Route", fmt::format("cloud; endpoint={}; reason=error", e->cfg.name));
        co_return;
      }
      tried_cloud.push_back(e);
    }
    sh_.rejected.fetch_add(1, std::memory_order_relaxed);
    answer(
        res, 503,
        json_error(fmt::format("no endpoint can take the request: local endpoints are {}, and {}",
                               why == "overflow" ? "at capacity" : "down",
                               sh_.cloud.empty() ? "no cloud endpoint is configured"
                                                 : "no cloud endpoint is up with a free slot")));
    res.set(http::field::retry_after, "1");
    res.set("X-Hylab-Route", "none; reason=" + why);
  }

  static bool openai_path(std::string_view target) {
    target = target.substr(0, target.find('?'));
    return target == "/v1/chat/completions" || target == "/v1/completions" ||
           target == "/v1/embeddings";
  }

  // On the way to the cloud, a local model name becomes its cloud alias (gateway.models).
  void rewrite_model(http::request<http::string_body>& req) const {
    if (sh_.cfg.models.empty() || !openai_path(req.target())) return;
    boost::system::error_code ec;
    boost::json::value v = boost::json::parse(req.body(), ec);
    if (ec || !v.is_object()) return;
    auto* model = v.as_object().if_contains("model");
    if (!model || !model->is_string()) return;
    for (const auto& [local, cloud] : sh_.cfg.models) {
      if (model->as_string() == local && !cloud.empty()) {
        *model = cloud;
        req.body() = boost::json::serialize(v);
        req.prepare_payload();
        return;
      }
    }
  }

  // Tokens from the response's `usage`, and the cloud spend they cost.
  void count_usage(Endpoint& e, const http::response<http::string_body>& res) {
    if (res.body().empty() || res.body().front() != '{') return;
    boost::system::error_code ec;
    boost::json::value v = boost::json::parse(res.body(), ec);
    if (ec || !v.is_object()) return;
    auto* usage = v.as_object().if_contains("usage");
    if (!usage || !usage->is_object()) return;
    auto count = [&](const char* key) -> std::uint64_t {
      auto* n = usage->as_object().if_contains(key);
      return n && n->is_int64() && n->as_int64() > 0 ? static_cast<std::uint64_t>(n->as_int64())
                                                     : 0;
    };
    std::uint64_t in = count("prompt_tokens");
    std::uint64_t out = count("completion_tokens");
    e.input_tokens.fetch_add(in, std::memory_order_relaxed);
    e.output_tokens.fetch_add(out, std::memory_order_relaxed);
    if (e.cloud) {
      sh_.add_spend(static_cast<double>(in) / 1000 * e.cfg.usd_per_1k_input +
                    static_cast<double>(out) / 1000 * e.cfg.usd_per_1k_output);
    }
  }

  // One exchange with an upstream over a pooled keep-alive connection. A connection
  // reused from the pool that fails before any response byte was a stale keep-alive:
  // the exchange is retried once on a fresh connection, as HAProxy does.
  awaitable<Outcome> forward(Endpoint& e, http::request<http::string_body>& req,
                             http::response<http::string_body>& out) {
    const GatewayConfig& cfg = sh_.cfg;
    e.requests.fetch_add(1, std::memory_order_relaxed);
    req.set(http::field::host, e.host_header);
    req.keep_alive(true);
    for (int attempt = 0; attempt < 2; ++attempt) {
      std::unique_ptr<beast::tcp_stream> conn;
      bool reused = false;
      auto& idle = idle_[&e];
      if (attempt == 0 && !idle.empty()) {
        conn = std::move(idle.back());
        idle.pop_back();
        reused = true;
      } else {
        conn = std::make_unique<beast::tcp_stream>(ioc_);
        conn->expires_after(secs(cfg.connect_timeout_seconds));
        auto [cec, ep] = co_await conn->async_connect(e.addresses, kTuple);
        if (cec) co_return Outcome::kNotSent;
        conn->socket().set_option(tcp::no_delay(true));
      }
      conn->expires_after(secs(cfg.response_timeout_seconds));
      auto [wec, wn] = co_await http::async_write(*conn, req, kTuple);
      if (wec) {
        if (reused) continue;
        co_return Outcome::kNotSent;
      }
      beast::flat_buffer buf;
      http::response_parser<http::string_body> parser;
      parser.body_limit(64 << 20);
      auto [rec, rn] = co_await http::async_read(*conn, buf, parser, kTuple);
      if (rec) {
        bool nothing_back = rn == 0 && !parser.got_some();
        if (reused && nothing_back && rec != beast::error::timeout) continue;
        co_return rec == beast::error::timeout ? Outcome::kTimeout : Outcome::kFailedAfterSend;
      }
      out = parser.release();
      out.set(http::field::server, "hylab-gateway");
      if (out.keep_alive() && idle.size() < 64) idle.push_back(std::move(conn));
      out.erase(http::field::connection);
      co_return Outcome::kOk;
    }
    co_return Outcome::kFailedAfterSend;
  }

  awaitable<void> admin_session(beast::tcp_stream stream) {
    beast::flat_buffer buffer;
    http::request<http::string_body> req;
    stream.expires_after(std::chrono::seconds(10));
    auto [ec, n] = co_await http::async_read(stream, buffer, req, kTuple);
    if (ec) co_return;
    http::response<http::string_body> res{http::status::ok, 11};
    if (req.target() == "/healthz") {
      int up = 0;
      for (auto& e : sh_.local) up += !e->down();
      answer(
          res, 200,
          boost::json::serialize(boost::json::object{{"status", "ok"}, {"local_up", up}}) + "\n");
    } else if (req.target() == "/metrics") {
      answer(res, 200, metrics_text(), "text/plain; version=0.0.4; charset=utf-8");
    } else {
      answer(res, 404, json_error("admin routes: /healthz, /metrics"));
    }
    res.keep_alive(false);
    res.prepare_payload();
    co_await http::async_write(stream, res, kTuple);
  }

  std::string metrics_text() {
    std::string out;
    auto per_endpoint = [&](const char* name, const char* type, const char* help, auto value) {
      out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
      for (const auto* pool : {&sh_.local, &sh_.cloud}) {
        for (const auto& e : *pool) {
          out += fmt::format("{}{{environment=\"{}\",endpoint=\"{}\"}} {}\n", name,
                             e->cloud ? "cloud" : "local", e->cfg.name, value(*e));
        }
      }
    };
    per_endpoint("hylab_gateway_upstream_requests_total", "counter",
                 "Requests sent to each endpoint",
                 [](const Endpoint& e) { return e.requests.load(); });
    per_endpoint("hylab_gateway_upstream_failures_total", "counter",
                 "Failed exchanges with each endpoint",
                 [](const Endpoint& e) { return e.failures.load(); });
    per_endpoint("hylab_gateway_inflight", "gauge", "Requests in flight to each endpoint",
                 [](const Endpoint& e) { return e.inflight.load(); });
    per_endpoint("hylab_gateway_endpoint_up", "gauge", "1 when the endpoint is not ejected",
                 [](const Endpoint& e) { return e.down() ? 0 : 1; });
    per_endpoint("hylab_gateway_input_tokens_total", "counter",
                 "Prompt tokens from responses' usage",
                 [](const Endpoint& e) { return e.input_tokens.load(); });
    per_endpoint("hylab_gateway_output_tokens_total", "counter",
                 "Completion tokens from responses' usage",
                 [](const Endpoint& e) { return e.output_tokens.load(); });
    auto counter = [&](const char* name, const char* help, std::uint64_t v) {
      out += fmt::format("# HELP {} {}\n# TYPE {} counter\n{} {}\n", name, help, name, name, v);
    };
    counter("hylab_gateway_overflow_total",
            "Requests sent to the cloud because local endpoints were at capacity",
            sh_.overflow.load());
    counter("hylab_gateway_failover_total",
            "Requests sent to the cloud because local endpoints were down", sh_.failover.load());
    counter("hylab_gateway_sensitive_refused_total",
            "Sensitive requests answered 503 instead of going to the cloud",
            sh_.sensitive_refused.load());
    counter("hylab_gateway_sensitive_to_cloud_total",
            "Sensitive requests sent to the cloud (always 0)", sh_.sensitive_to_cloud.load());
    counter("hylab_gateway_rejected_total", "Requests the gateway answered itself with an error",
            sh_.rejected.load());
    counter("hylab_gateway_budget_refused_total",
            "Requests refused because the daily cloud budget was spent", sh_.budget_refused.load());
    auto value = [&](const char* name, const char* type, const char* help, double v) {
      out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, v);
    };
    value("hylab_gateway_cloud_spend_usd_total", "counter", "Cloud spend from usage and prices",
          static_cast<double>(sh_.spend_total_micro_usd.load()) / 1e6);
    out +=
        "# HELP hylab_gateway_request_duration_seconds Time from a request read to its answer "
        "ready\n"
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

  Shared& sh_;
  asio::io_context ioc_{1};
  tcp::acceptor acceptor_;
  tcp::acceptor admin_;
  std::map<Endpoint*, std::vector<std::unique_ptr<beast::tcp_stream>>> idle_;
};

Result<std::unique_ptr<Endpoint>> make_endpoint(const GatewayEndpoint& cfg, bool cloud) {
  auto e = std::make_unique<Endpoint>();
  e->cfg = cfg;
  e->cloud = cloud;
  std::string rest = cfg.url.substr(cfg.url.find("://") + 3);
  if (cfg.url.rfind("https://", 0) == 0) {
    return Error{
        Errc::kInvalidInput,
        fmt::format(
            "gateway endpoint '{}': https upstreams are not supported yet (use http:// inside a "
            "private network)",
            cfg.name)};
  }
  std::string authority = rest.substr(0, rest.find('/'));
  auto colon = authority.rfind(':');
  e->host = colon == std::string::npos ? authority : authority.substr(0, colon);
  e->port = colon == std::string::npos ? "80" : authority.substr(colon + 1);
  e->host_header = authority;
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
  for (const auto& r : results) e->addresses.push_back(r.endpoint());
  return e;
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
  Shared sh(g);
  for (auto [list, pool, cloud] :
       {std::tuple{&g.local, &sh.local, false}, std::tuple{&g.cloud, &sh.cloud, true}}) {
    for (const auto& e : *list) {
      auto ep = make_endpoint(e, cloud);
      if (!ep) {
        err << "error: " << ep.error().message << "\n";
        return 2;
      }
      pool->push_back(std::move(*ep));
    }
  }
  int threads = g.threads > 0 ? g.threads
                              : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::unique_ptr<Worker>> workers;
  workers.reserve(static_cast<std::size_t>(threads));
  for (int i = 0; i < threads; ++i) workers.push_back(std::make_unique<Worker>(sh));
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
  out << fmt::format(
             "hylab gateway: listening on http://{}:{} ({} threads), admin on http://{}:{}\n", host,
             bound, threads, ahost, *admin_port)
      << fmt::format("  local: {} endpoint(s), cloud: {} endpoint(s), sensitive header: {}\n",
                     sh.local.size(), sh.cloud.size(), g.sensitive_header)
      << std::flush;
  if (opts.port_file) {
    std::string tmp = *opts.port_file + ".tmp";
    std::ofstream(tmp) << boost::json::serialize(
                              boost::json::object{{"listen", bound}, {"admin", *admin_port}})
                       << "\n";
    std::rename(tmp.c_str(), opts.port_file->c_str());
  }
  asio::signal_set signals(workers.front()->ioc(), SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code ec, int) {
    if (ec) return;
    sh.stopping = true;
    for (auto& w : workers) w->ioc().stop();
  });
  std::vector<std::thread> pool;
  for (std::size_t i = 1; i < workers.size(); ++i)
    pool.emplace_back([&, i] { workers[i]->ioc().run(); });
  workers.front()->ioc().run();
  for (auto& t : pool) t.join();
  out << "hylab gateway: stopped\n";
  return 0;
}

}  // namespace hylab::gateway
