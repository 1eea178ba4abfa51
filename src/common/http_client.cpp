#include "common/http_client.h"

#include <fmt/format.h>
#include <openssl/ssl.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>

#include "common/units.h"

namespace hylab {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

namespace {

struct Url {
  bool tls = false;
  std::string host;
  std::string port;
  std::string target;
};

Result<Url> parse_url(const std::string& url) {
  Url u;
  std::string rest;
  if (url.rfind("http://", 0) == 0) {
    rest = url.substr(7);
  } else if (url.rfind("https://", 0) == 0) {
    u.tls = true;
    rest = url.substr(8);
  } else {
    return Error{Errc::kInvalidInput,
                 fmt::format("URL must start with http:// or https://: {}", url)};
  }
  auto slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  u.target = slash == std::string::npos ? "/" : rest.substr(slash);
  u.port = u.tls ? "443" : "80";
  if (!authority.empty() && authority.front() == '[') {  // [::1]:7460
    auto close = authority.find(']');
    if (close == std::string::npos)
      return Error{Errc::kInvalidInput, fmt::format("bad IPv6 address in URL: {}", url)};
    u.host = authority.substr(1, close - 1);
    if (close + 1 < authority.size() && authority[close + 1] == ':')
      u.port = authority.substr(close + 2);
  } else if (auto colon = authority.rfind(':'); colon != std::string::npos) {
    u.host = authority.substr(0, colon);
    u.port = authority.substr(colon + 1);
  } else {
    u.host = authority;
  }
  if (u.host.empty()) return Error{Errc::kInvalidInput, fmt::format("URL has no host: {}", url)};
  return u;
}

class Call {
 public:
  Call(const HttpClientRequest& req, const std::function<bool(std::string_view)>* on_data)
      : req_(req), on_data_(on_data) {}

  Result<HttpClientResponse> run() {
    auto url = parse_url(req_.url);
    if (!url) return url.error();
    url_ = *url;
    asio::co_spawn(ioc_, go(), [this](const std::exception_ptr& e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        if (!error_)
          error_ = Error{Errc::kIo, fmt::format("request to {} failed: {}", req_.url, ex.what())};
      }
    });
    ioc_.run();
    if (error_) return *error_;
    return std::move(resp_);
  }

 private:
  void fail(Errc code, std::string what, const boost::system::error_code& ec) {
    if (!error_) {
      error_ = Error{code, fmt::format("{} {}:{}: {}", what, url_.host, url_.port, ec.message())};
    }
  }

  asio::awaitable<void> go() {
    tcp::resolver resolver(ioc_);
    auto [rec, results] = co_await resolver.async_resolve(url_.host, url_.port, kTuple);
    if (rec) {
      fail(Errc::kIo, "cannot resolve", rec);
      co_return;
    }
    beast::tcp_stream tcp_stream(ioc_);
    tcp_stream.expires_after(from_seconds(req_.timeout_seconds));
    auto [cec, ep] = co_await tcp_stream.async_connect(results, kTuple);
    if (cec) {
      fail(cec == asio::error::connection_refused ? Errc::kNotFound : Errc::kIo,
           "cannot connect to", cec);
      co_return;
    }
    if (!url_.tls) {
      co_await exchange(tcp_stream, tcp_stream);
      co_return;
    }
    ssl::context ctx(ssl::context::tls_client);
    ctx.set_default_verify_paths();
    boost::system::error_code ec;
    if (!req_.ca_file.empty()) ctx.load_verify_file(req_.ca_file, ec);
    if (ec) {
      fail(Errc::kInvalidInput, "CA file " + req_.ca_file + " for", ec);
      co_return;
    }
    ctx.set_verify_mode(ssl::verify_peer);
    beast::ssl_stream<beast::tcp_stream> s(std::move(tcp_stream), ctx);
    s.set_verify_callback(ssl::host_name_verification(url_.host));
    SSL_set_tlsext_host_name(s.native_handle(), url_.host.c_str());
    auto [hec] = co_await s.async_handshake(ssl::stream_base::client, kTuple);
    if (hec) {
      fail(Errc::kIo, "TLS handshake with", hec);
      co_return;
    }
    co_await exchange(s, beast::get_lowest_layer(s));
  }

  template <class Stream>
  asio::awaitable<void> exchange(Stream& stream, beast::tcp_stream& lowest) {
    http::request<http::string_body> req{http::string_to_verb(req_.method), url_.target, 11};
    req.set(http::field::host, url_.host);
    req.set(http::field::user_agent, "hylab");
    for (const auto& [k, v] : req_.headers) req.set(k, v);
    req.body() = req_.body;
    req.prepare_payload();
    lowest.expires_after(from_seconds(req_.timeout_seconds));
    auto [wec, wn] = co_await http::async_write(stream, req, kTuple);
    if (wec) {
      fail(Errc::kIo, "cannot send to", wec);
      co_return;
    }
    beast::flat_buffer buffer;
    http::response_parser<http::buffer_body> parser;
    parser.body_limit(on_data_ ? boost::optional<std::uint64_t>()
                               : boost::optional<std::uint64_t>(req_.max_body_bytes));
    lowest.expires_after(from_seconds(req_.timeout_seconds));
    auto [hec, hn] = co_await http::async_read_header(stream, buffer, parser, kTuple);
    if (hec) {
      fail(Errc::kIo, "no response from", hec);
      co_return;
    }
    resp_.status = static_cast<int>(parser.get().result_int());
    for (const auto& f : parser.get()) {
      std::string name(f.name_string());
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      resp_.headers[name] = std::string(f.value());
    }
    char buf[16384];
    while (!parser.is_done()) {
      parser.get().body().data = buf;
      parser.get().body().size = sizeof buf;
      lowest.expires_after(from_seconds(req_.timeout_seconds));
      auto [ec, n] = co_await http::async_read_some(stream, buffer, parser, kTuple);
      if (ec && ec != http::error::need_buffer) {
        fail(Errc::kIo,
             ec == http::error::body_limit ? "response body over the limit from" : "reading from",
             ec);
        co_return;
      }
      std::size_t got = sizeof buf - parser.get().body().size;
      if (got == 0) continue;
      if (on_data_) {
        if (!(*on_data_)(std::string_view(buf, got))) co_return;
      } else {
        resp_.body.append(buf, got);
      }
    }
  }

  asio::io_context ioc_;
  const HttpClientRequest& req_;
  const std::function<bool(std::string_view)>* on_data_;
  Url url_;
  HttpClientResponse resp_;
  std::optional<Error> error_;
};

}  // namespace

Result<HttpClientResponse> http_request(const HttpClientRequest& req) {
  return Call(req, nullptr).run();
}

Result<HttpClientResponse> http_stream(const HttpClientRequest& req,
                                       const std::function<bool(std::string_view)>& on_data) {
  return Call(req, &on_data).run();
}

}  // namespace hylab
