// Pieces of the gateway's integration tests: the real `hylab gateway` binary between real
// HTTP clients and upstreams on loopback (tests/integration/upstream.py), a raw HTTP/1.1
// client to send any bytes, and helpers to read what the upstreams recorded.
#pragma once

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <optional>

#include "common/text.h"
#include "process.h"
#include "serve_harness.h"

namespace hylab::testing {

inline std::string slurp(const std::string& path) {
  auto t = read_text_file(path, 1 << 24);
  return t ? *t : std::string();
}

inline int lines(const std::string& path) {
  std::string s = slurp(path);
  return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
}

// One response as a raw client read it.
struct RawResponse {
  int status = 0;
  std::string head;  // status line and fields, as sent
  std::string body;  // de-chunked
  // The first value of a field (names case-insensitive), or "".
  std::string field(std::string_view name) const {
    std::size_t at = head.find("\r\n");
    while (at != std::string::npos && at + 2 < head.size()) {
      std::size_t end = head.find("\r\n", at + 2);
      std::string_view line = std::string_view(head).substr(at + 2, end - at - 2);
      auto colon = line.find(':');
      if (colon != std::string_view::npos && iequals(line.substr(0, colon), name))
        return std::string(trim(line.substr(colon + 1)));
      at = end;
    }
    return {};
  }
};

// A raw HTTP/1.1 client on one connection, to see bytes as they arrive (streams, slow
// clients, keep-alive across a reload). Every read has a deadline.
class RawClient {
 public:
  explicit RawClient(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  RawClient(const RawClient&) = delete;
  ~RawClient() { ::close(fd_); }
  bool connected() const { return connected_; }
  bool send(std::string_view data) {
    return ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(data.size());
  }
  // Reads until `want` has arrived (true), or the peer closed or the deadline passed.
  bool read_until(std::string_view want, double seconds = 10) {
    auto deadline = deadline_in(seconds);
    while (got_.find(want) == std::string::npos) {
      if (!read_some(deadline)) return got_.find(want) != std::string::npos;
    }
    return true;
  }
  // Reads until the peer closes (true) or the deadline passes (false).
  bool read_until_closed(double seconds = 10) {
    auto deadline = deadline_in(seconds);
    while (read_some(deadline)) {
    }
    return closed_;
  }
  // The next response (Content-Length or chunked body), taken off what was received; nothing
  // when none arrived complete before the deadline or the peer closed.
  std::optional<RawResponse> read_response(double seconds = 10) {
    auto deadline = deadline_in(seconds);
    auto more = [&] { return read_some(deadline); };
    std::size_t end;
    while ((end = got_.find("\r\n\r\n")) == std::string::npos) {
      if (!more()) return std::nullopt;
    }
    RawResponse r;
    r.head = got_.substr(0, end + 2);
    r.status = std::atoi(r.head.c_str() + std::min<std::size_t>(9, r.head.size()));
    std::size_t pos = end + 4;
    if (iequals(r.field("transfer-encoding"), "chunked")) {
      for (;;) {
        std::size_t eol;
        while ((eol = got_.find("\r\n", pos)) == std::string::npos) {
          if (!more()) return std::nullopt;
        }
        std::size_t size = std::strtoul(got_.c_str() + pos, nullptr, 16);
        while (got_.size() < eol + 2 + size + 2) {
          if (!more()) return std::nullopt;
        }
        r.body.append(got_, eol + 2, size);
        pos = eol + 2 + size + 2;
        if (size == 0) break;
      }
    } else {
      std::size_t length = std::strtoul(r.field("content-length").c_str(), nullptr, 10);
      while (got_.size() < pos + length) {
        if (!more()) return std::nullopt;
      }
      r.body = got_.substr(pos, length);
      pos += length;
    }
    got_.erase(0, pos);
    return r;
  }
  const std::string& received() const { return got_; }
  bool closed() const { return closed_; }
  void clear() { got_.clear(); }

 private:
  static std::chrono::steady_clock::time_point deadline_in(double seconds) {
    return std::chrono::steady_clock::now() +
           std::chrono::milliseconds(static_cast<int>(seconds * 1000));
  }
  bool read_some(std::chrono::steady_clock::time_point deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0 || closed_) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) return false;
    char buf[8192];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) {
      closed_ = true;
      return false;
    }
    got_.append(buf, static_cast<std::size_t>(n));
    return true;
  }
  int fd_ = -1;
  bool connected_ = false;
  bool closed_ = false;
  std::string got_;
};

inline std::string post(std::string_view target, std::string_view body) {
  return fmt::format(
      "POST {} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: "
      "{}\r\n\r\n{}",
      target, body.size(), body);
}

// A metric's value (first series whose name and labels start with `key`), or -1.
inline double metric(const std::string& text, const std::string& key) {
  auto at = text.find("\n" + key + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + key.size() + 2));
}

// A fixture with a scratch directory, upstreams and one gateway, all stopped at the end.
class GatewayHarness : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("hylab-gw-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    gateway_.stop();
    for (auto& u : upstreams_) u->stop();
    std::filesystem::remove_all(dir_);
  }
  std::string path(const std::string& n) const { return (dir_ / n).string(); }

  // An upstream named NAME (more upstream.py flags in `extra`); returns its port.
  int upstream(const std::string& name, const std::string& hold = "",
               std::vector<std::string> extra = {}) {
    auto p = std::make_unique<Process>();
    std::vector<std::string> argv{
        "python3",     std::string(HYLAB_SOURCE_DIR) + "/tests/integration/upstream.py",
        "--name",      name,
        "--port-file", path(name + ".port"),
        "--record",    path(name + ".rec")};
    if (!hold.empty()) {
      argv.push_back("--hold-file");
      argv.push_back(hold);
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    std::ofstream(path(name + ".rec")).close();
    p->start(argv, path(name + ".log"));
    upstreams_.push_back(std::move(p));
    EXPECT_TRUE(wait_until([&] { return std::filesystem::exists(path(name + ".port")); }));
    return std::stoi(slurp(path(name + ".port")));
  }

  void start_gateway(const std::string& config, std::vector<std::string> env = {}) {
    std::ofstream(path("hylab.yaml")) << config;
    env.push_back("HYLAB_TEST_CLOUD_KEY=cloud-secret-123");
    gateway_.start(
        {HYLAB_BINARY, "gateway", "--config", path("hylab.yaml"), "--port-file", path("gw.json")},
        path("gateway.log"), env);
    ASSERT_TRUE(wait_until([&] { return std::filesystem::exists(path("gw.json")); }))
        << slurp(path("gateway.log"));
    auto v = json::parse(slurp(path("gw.json")));
    port_ = static_cast<int>(v.at("listen").as_int64());
    admin_ = static_cast<int>(v.at("admin").as_int64());
  }

  HttpClientResponse send(const std::string& target, const std::string& body = "",
                          std::vector<std::pair<std::string, std::string>> headers = {}) const {
    HttpClientRequest r;
    r.method = body.empty() ? "GET" : "POST";
    r.url = fmt::format("http://127.0.0.1:{}{}", port_, target);
    r.body = body;
    r.headers = std::move(headers);
    r.timeout_seconds = 20;
    auto resp = http_request(r);
    EXPECT_TRUE(resp) << resp.error().message;
    return resp ? *resp : HttpClientResponse{};
  }

  std::string metrics() const {
    HttpClientRequest r;
    r.url = fmt::format("http://127.0.0.1:{}/metrics", admin_);
    auto resp = http_request(r);
    return resp ? resp->body : std::string();
  }

  std::filesystem::path dir_;
  std::vector<std::unique_ptr<Process>> upstreams_;
  Process gateway_;
  int port_ = 0;
  int admin_ = 0;
};

}  // namespace hylab::testing
