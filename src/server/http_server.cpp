#include "server/http_server.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/socket.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/json.hpp>
#include <cerrno>
#include <chrono>

#include "common/connection_table.h"
#include "common/http1.h"
#include "common/units.h"

namespace hylab::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using asio::awaitable;
using asio::use_awaitable;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kReadChunk = 16 * 1024;

std::optional<std::string> url_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%') {
      if (i + 2 >= s.size() || !std::isxdigit(static_cast<unsigned char>(s[i + 1])) ||
          !std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
        return std::nullopt;
      }
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else if (s[i] == '+') {
      out += ' ';
    } else {
      out += s[i];
    }
  }
  return out;
}

namespace {

std::string error_json(std::string_view message) {
  return boost::json::serialize(boost::json::object{{"error", message}}) + "\n";
}

bool parse_target(std::string_view target, HttpRequest& req) {
  auto q = target.find('?');
  auto path = url_decode(target.substr(0, q));
  if (!path) return false;
  req.path = *path;
  if (q == std::string_view::npos) return true;
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    auto amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    auto eq = pair.find('=');
    auto k = url_decode(pair.substr(0, eq));
    auto v = url_decode(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1));
    if (!k || !v) return false;
    if (!k->empty()) req.query[*k] = *v;
    if (amp == std::string_view::npos) break;
    rest = rest.substr(amp + 1);
  }
  return true;
}

}  // namespace

class HttpServer::Impl : public std::enable_shared_from_this<Impl> {
 public:
  Impl(asio::io_context& ioc, HttpServerOptions opts, Handler handler)
      : ioc_(ioc),
        opts_(std::move(opts)),
        handler_(std::move(handler)),
        acceptor_(ioc),
        connections_(opts_.max_connections),
        room_(ioc) {
    connections_.on_release([this] { room_.cancel(); });
  }

  Result<std::uint16_t> start() {
    boost::system::error_code ec;
    if (!opts_.tls_cert.empty() || !opts_.tls_key.empty()) {
      tls_ = std::make_unique<ssl::context>(ssl::context::tls_server);
      tls_->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                        ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
      tls_->use_certificate_chain_file(opts_.tls_cert, ec);
      if (ec)
        return Error{Errc::kInvalidInput,
                     fmt::format("TLS certificate {}: {}", opts_.tls_cert, ec.message())};
      tls_->use_private_key_file(opts_.tls_key, ssl::context::pem, ec);
      if (ec)
        return Error{Errc::kInvalidInput,
                     fmt::format("TLS key {}: {}", opts_.tls_key, ec.message())};
    }
    auto addr = asio::ip::make_address(opts_.host, ec);
    if (ec)
      return Error{Errc::kInvalidInput,
                   fmt::format("listen address '{}': {}", opts_.host, ec.message())};
    tcp::endpoint ep(addr, opts_.port);
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return Error{Errc::kIo,
                   fmt::format("cannot listen on {}:{}: {}", opts_.host, opts_.port, ec.message())};
    }
    ::fcntl(acceptor_.native_handle(), F_SETFD, FD_CLOEXEC);
    asio::co_spawn(ioc_, accept_loop(shared_from_this()), asio::detached);
    return acceptor_.local_endpoint().port();
  }

  // Stops accepting and closes every open connection; their coroutines then end.
  void stop() {
    stopping_ = true;
    boost::system::error_code ec;
    acceptor_.close(ec);
    for (auto* s : open_) s->close(ec);
    open_.clear();
    room_.cancel();
  }

 private:
  awaitable<void> accept_loop(std::shared_ptr<Impl> self) {
    for (;;) {
      auto [ec, sock] = co_await acceptor_.async_accept(kTuple);
      if (ec) {
        if (stopping_ || ec == asio::error::operation_aborted) co_return;
        // E.g. EMFILE: keep serving the connections we have, and retry a little later
        // rather than spinning on an accept that fails at once.
        asio::steady_timer backoff(ioc_, std::chrono::milliseconds(100));
        co_await backoff.async_wait(kTuple);
        continue;
      }
      // At the cap the longest-waiting idle or slow connection makes room; when every one
      // is busy answering, this one waits (and those after it, in the listen backlog).
      while (!connections_.make_room()) {
        room_.expires_at(asio::steady_timer::time_point::max());
        co_await room_.async_wait(kTuple);
        if (stopping_) co_return;
      }
      ::fcntl(sock.native_handle(), F_SETFD, FD_CLOEXEC);
      sock.set_option(tcp::no_delay(true));
      if (tls_) {
        auto stream = std::make_shared<beast::ssl_stream<beast::tcp_stream>>(
            beast::tcp_stream(std::move(sock)), *tls_);
        track(beast::get_lowest_layer(*stream).socket());
        asio::co_spawn(ioc_, tls_session(self, stream), asio::detached);
      } else {
        auto stream = std::make_shared<beast::tcp_stream>(std::move(sock));
        track(stream->socket());
        asio::co_spawn(ioc_, session(self, stream), asio::detached);
      }
    }
  }

  // Open sockets, so stop() can close them; each session removes its own when it ends.
  void track(tcp::socket& s) { open_.push_back(&s); }

  awaitable<void> tls_session(std::shared_ptr<Impl> self,
                              std::shared_ptr<beast::ssl_stream<beast::tcp_stream>> s) {
    auto& lowest = beast::get_lowest_layer(*s);
    ConnectionTable::Registration reg(connections_, [&lowest] { lowest.cancel(); });
    lowest.expires_after(from_seconds(opts_.read_timeout_seconds));
    auto [ec] = co_await s->async_handshake(ssl::stream_base::server, kTuple);
    if (!ec && !reg.aborted()) co_await serve(*s, lowest, reg);
    untrack(&beast::get_lowest_layer(*s).socket());
    if (!ec) {
      beast::get_lowest_layer(*s).expires_after(std::chrono::seconds(2));
      co_await s->async_shutdown(kTuple);
    }
    (void)self;
  }

  awaitable<void> session(std::shared_ptr<Impl> self, std::shared_ptr<beast::tcp_stream> s) {
    {
      ConnectionTable::Registration reg(connections_, [&s] { s->cancel(); });
      co_await serve(*s, *s, reg);
    }
    untrack(&s->socket());
    boost::system::error_code ec;
    s->socket().shutdown(tcp::socket::shutdown_send, ec);
    (void)self;
  }

  void untrack(tcp::socket* s) { std::erase(open_, s); }

  // During a streamed response the client has nothing to send: readable bytes or EOF
  // mean it went away (Ctrl-C on `hylab logs -f`), so the stream stops instead of
  // polling for a reader that is gone.
  static bool peer_gone(tcp::socket& s) {
    char c;
    ssize_t n = ::recv(s.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) || n > 0;
  }

  // After an error answer to a request whose body was not read, read and drop what the
  // client still sends (briefly), so closing does not reset the connection before the
  // client has read the answer.
  awaitable<void> drain(beast::tcp_stream& lowest) {
    boost::system::error_code ec;
    lowest.socket().shutdown(tcp::socket::shutdown_send, ec);
    char scratch[16384];
    std::size_t total = 0;
    lowest.expires_after(std::chrono::seconds(2));
    while (total < (64u << 20)) {
      auto [rec, n] = co_await lowest.async_read_some(asio::buffer(scratch), kTuple);
      if (rec) break;
      total += n;
    }
  }

  // Error answers (the connection closes after them: its framing is lost).
  template <class Stream>
  awaitable<void> refuse(Stream& stream, beast::tcp_stream& lowest, int status,
                         std::string_view why) {
    http::response<http::string_body> res{static_cast<http::status>(status), 11};
    res.set(http::field::content_type, "application/json");
    res.set(http::field::connection, "close");
    res.body() = error_json(why);
    res.prepare_payload();
    lowest.expires_after(from_seconds(opts_.write_timeout_seconds));
    co_await http::async_write(stream, res, kTuple);
    co_await drain(lowest);
  }

  // Reads requests with the strict reader (common/http1.h): bytes go through one read
  // buffer of kReadChunk, the reader holds at most the head and body limits, and bytes past
  // a request (a pipeline) wait in `pending`, which never holds more than one read.
  template <class Stream>
  awaitable<void> serve(Stream& stream, beast::tcp_stream& lowest,
                        ConnectionTable::Registration& reg) {
    http1::RequestReader reader({opts_.max_header_bytes, opts_.max_body_bytes});
    std::string pending;
    std::unique_ptr<char[]> chunk;
    bool first = true;
    for (;;) {
      if (stopping_) co_return;
      reader.reset();
      reg.set(ConnectionTable::Phase::kIdle);
      // Between requests the idle timeout applies; once bytes arrive, the read timeout.
      lowest.expires_after(
          from_seconds(first ? opts_.read_timeout_seconds : opts_.idle_timeout_seconds));
      first = false;
      bool continued = false;
      while (!reader.done() && !reader.failed()) {
        if (!pending.empty()) {
          bool was_started = reader.started();
          std::size_t used = reader.parse(pending);
          pending.erase(0, used);
          if (!was_started && reader.started()) {
            reg.set(ConnectionTable::Phase::kReading);
            lowest.expires_after(from_seconds(opts_.read_timeout_seconds));
          }
          if (used == 0 && !reader.done() && !reader.failed()) co_return;  // cannot happen
          continue;
        }
        if (reader.head_done() && reader.expects_continue() && !continued) {
          continued = true;
          static constexpr std::string_view k100 = "HTTP/1.1 100 Continue\r\n\r\n";
          auto [wec, wn] = co_await asio::async_write(stream, asio::buffer(k100), kTuple);
          if (wec) co_return;
        }
        if (!chunk) chunk = std::make_unique<char[]>(kReadChunk);
        auto [ec, n] =
            co_await stream.async_read_some(asio::buffer(chunk.get(), kReadChunk), kTuple);
        if (reg.aborted()) co_return;  // closed to make room for a new connection
        pending.append(chunk.get(), n);
        if (ec == asio::error::eof || ec == http::error::end_of_stream ||
            ec == ssl::error::stream_truncated) {
          if (!pending.empty()) continue;  // parse what came before the end first
          reader.eof();
          if (reader.closed()) co_return;
          break;
        }
        if (ec) co_return;  // timeout, reset, stop()
      }
      if (reader.failed()) {
        co_await refuse(stream, lowest, reader.error().status, reader.error().reason);
        co_return;
      }
      reg.set(ConnectionTable::Phase::kBusy);
      HttpRequest req;
      req.method = std::string(reader.method());
      req.target = std::string(reader.target());
      for (std::size_t i = 0; i < reader.field_count(); ++i) {
        auto f = reader.field(i);
        std::string name(f.name);
        for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        // A field sent twice is one list (RFC 9110 §5.3): a second Authorization makes the
        // value no token matches, never the one that happens to come last.
        auto [it, fresh] = req.headers.try_emplace(std::move(name), f.value);
        if (!fresh) it->second.append(", ").append(f.value);
      }
      req.body = std::move(reader.body());
      HttpResponse out;
      if (!parse_target(req.target, req)) {
        out.status = 400;
        out.body = error_json("malformed URL escape in the request target");
      } else {
        try {
          out = handler_(req);
        } catch (const std::exception& e) {
          out = HttpResponse{};
          out.status = 500;
          out.body = error_json(std::string("internal error: ") + e.what());
        }
      }
      bool keep_alive = reader.keep_alive() && !stopping_;
      unsigned version = reader.version() == 10 ? 10 : 11;
      lowest.expires_after(from_seconds(opts_.write_timeout_seconds));
      if (!out.stream) {
        http::response<http::string_body> res{static_cast<http::status>(out.status), version};
        res.set(http::field::content_type, out.content_type);
        res.set(http::field::server, "hylab");
        for (const auto& [k, v] : out.headers) res.set(k, v);
        res.body() = std::move(out.body);
        res.keep_alive(keep_alive);
        res.prepare_payload();
        auto [wec, wn] = co_await http::async_write(stream, res, kTuple);
        if (wec || !keep_alive) co_return;
        continue;
      }
      // Streamed body: chunked, until the source says it is done.
      http::response<http::empty_body> res{static_cast<http::status>(out.status), version};
      res.set(http::field::content_type, out.content_type);
      res.set(http::field::server, "hylab");
      res.set(http::field::cache_control, "no-cache");
      for (const auto& [k, v] : out.headers) res.set(k, v);
      res.chunked(true);
      res.keep_alive(false);
      http::response_serializer<http::empty_body> sr{res};
      auto [hec, hn] = co_await http::async_write_header(stream, sr, kTuple);
      if (hec) co_return;
      asio::steady_timer timer(ioc_);
      for (;;) {
        if (stopping_ || peer_gone(lowest.socket())) co_return;
        std::optional<std::string> chunk = out.stream();
        if (!chunk) break;
        if (chunk->empty()) {
          timer.expires_after(from_seconds(opts_.stream_poll_seconds));
          co_await timer.async_wait(kTuple);
          continue;
        }
        lowest.expires_after(from_seconds(opts_.write_timeout_seconds));
        auto [cec, cn] =
            co_await asio::async_write(stream, http::make_chunk(asio::buffer(*chunk)), kTuple);
        if (cec) co_return;
      }
      // The timeout kept running while the source was quiet: start it afresh.
      lowest.expires_after(from_seconds(opts_.write_timeout_seconds));
      co_await asio::async_write(stream, http::make_chunk_last(), kTuple);
      co_return;
    }
  }

  asio::io_context& ioc_;
  HttpServerOptions opts_;
  Handler handler_;
  tcp::acceptor acceptor_;
  std::unique_ptr<ssl::context> tls_;
  bool stopping_ = false;
  std::vector<tcp::socket*> open_;
  ConnectionTable connections_;
  asio::steady_timer room_;  // the accept loop waits on it while every connection is busy
};

HttpServer::HttpServer(asio::io_context& ioc, HttpServerOptions opts, Handler handler)
    : impl_(std::make_shared<Impl>(ioc, std::move(opts), std::move(handler))) {}
HttpServer::~HttpServer() = default;
Result<std::uint16_t> HttpServer::start() { return impl_->start(); }
void HttpServer::stop() { impl_->stop(); }

}  // namespace hylab::server
