// `hylab serve`'s HTTP framing and connection limits, from a raw socket: requests framed
// ambiguously are refused and end their connection (nothing after them is answered), chunk
// framing cannot make the server buffer before authentication, and past the connection
// cap idle connections make room for a client that has something to ask.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "serve_harness.h"

namespace hylab::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

int port_of(const ServeHarness& s) { return std::stoi(s.url().substr(s.url().rfind(':') + 1)); }

// A connected socket with a receive timeout, or -1.
int dial(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool send_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// Everything the server sends until it closes (or 10 s pass).
std::string read_to_end(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  return out;
}

std::size_t count(const std::string& hay, std::string_view needle) {
  std::size_t n = 0;
  for (auto p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

long rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// Each of these requests is followed on its connection by a second, smuggled one: the
// first must be refused and the connection closed, so the second is never answered.
TEST(ServeFraming, AmbiguousFramingIsRefusedAndNothingAfterItIsAnswered) {
  ServeHarness s;
  s.start();
  const std::string smuggled = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
  struct Case {
    std::string name;
    std::string head;
    std::string status;
  };
  std::vector<Case> cases = {
      {"te-not-chunked", "Transfer-Encoding: xchunked\r\n", "400"},
      {"te-gzip-only", "Transfer-Encoding: gzip\r\n", "400"},
      {"te-identity", "Transfer-Encoding: identity\r\n", "400"},
      {"te-gzip-then-chunked", "Transfer-Encoding: gzip, chunked\r\n", "501"},
      {"te-chunked-then-gzip", "Transfer-Encoding: chunked, gzip\r\n", "400"},
      {"cl-and-te", "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", "400"},
      {"two-cl", "Content-Length: 0\r\nContent-Length: 5\r\n", "400"},
      {"cl-not-a-number", "Content-Length: +5\r\n", "400"},
      {"obs-fold", "Content-Length: 0\r\nX-A: b\r\n c\r\n", "400"},
      {"bare-lf", "Content-Length: 0\nX-A: b\r\n", "400"},
      {"space-before-colon", "Content-Length : 0\r\n", "400"},
  };
  for (const auto& c : cases) {
    int fd = dial(port_of(s));
    ASSERT_GE(fd, 0);
    std::string wire = "POST /v1/jobs HTTP/1.1\r\nHost: x\r\n" + c.head + "\r\n" + smuggled;
    ASSERT_TRUE(send_all(fd, wire)) << c.name;
    std::string reply = read_to_end(fd);
    ::close(fd);
    EXPECT_THAT(reply, HasSubstr("HTTP/1.1 " + c.status)) << c.name << "\n" << reply;
    EXPECT_EQ(count(reply, "HTTP/1.1 "), 1u) << c.name << ": the smuggled request was answered\n"
                                             << reply;
    EXPECT_THAT(reply, Not(HasSubstr("\"ok\""))) << c.name;
  }
}

TEST(ServeFraming, TrailersAreReadWithinTheHeaderLimitAndNeverBecomeHeaders) {
  ServeHarness s;
  s.start();
  // A request without a token whose trailer carries one: still 401.
  int fd = dial(port_of(s));
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd,
                       "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                       "Connection: close\r\n\r\n4\r\nabcd\r\n0\r\nAuthorization: Bearer " +
                           s.token() + "\r\n\r\n"));
  std::string reply = read_to_end(fd);
  ::close(fd);
  EXPECT_THAT(reply, HasSubstr("HTTP/1.1 401")) << reply;
  // Thousands of trailer fields: 431 once they pass the header limit.
  fd = dial(port_of(s));
  ASSERT_GE(fd, 0);
  std::string many = "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n";
  for (int i = 0; i < 5000; ++i) many += fmt::format("X-T{}: v\r\n", i);
  many += "\r\n";
  send_all(fd, many);  // the server may close before it has all of it
  reply = read_to_end(fd);
  ::close(fd);
  EXPECT_THAT(reply, HasSubstr("HTTP/1.1 431")) << reply;
}

// Before authentication, a chunk-size line with an endless extension is cut off at the
// header limit: the server answers 431 and its memory does not grow with what was sent.
TEST(ServeFraming, AChunkExtensionCannotMakeTheServerBuffer) {
  ServeHarness s;
  s.start();
  long before = rss_kib(s.pid());
  ASSERT_GT(before, 0);
  int fd = dial(port_of(s));
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(
      send_all(fd, "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;"));
  std::string ext(1 << 20, 'a');
  for (int i = 0; i < 32; ++i) {
    if (!send_all(fd, ext)) break;  // the server answered and closed
  }
  std::string reply = read_to_end(fd);
  ::close(fd);
  EXPECT_THAT(reply, HasSubstr("HTTP/1.1 431")) << reply.substr(0, 300);
  EXPECT_THAT(reply, Not(HasSubstr("401")));
  long after = rss_kib(s.pid());
  EXPECT_LT(after - before, 16 * 1024)
      << "serve grew from " << before << " KiB to " << after << " KiB on one connection";
}

TEST(ServeLimits, PastTheConnectionCapIdleConnectionsMakeRoom) {
  ServeHarness s("  max_connections: 8\n");
  s.start();
  std::vector<int> idle;
  for (int i = 0; i < 40; ++i) {
    int fd = dial(port_of(s));
    ASSERT_GE(fd, 0);
    idle.push_back(fd);
  }
  // A client with something to ask is answered though 40 connections sit idle.
  auto r = s.request("GET", "/healthz");
  EXPECT_EQ(r.status, 200) << r.body;
  // The server closed the oldest idle ones: at most 8 of the 40 are still open.
  auto closed_by_server = [&] {
    int closed = 0;
    for (int fd : idle) {
      pollfd p{fd, POLLIN, 0};
      char c;
      if (::poll(&p, 1, 0) == 1 && ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0) ++closed;
    }
    return closed;
  };
  EXPECT_TRUE(wait_until([&] { return closed_by_server() >= 32; }, 10)) << closed_by_server();
  // The newest of them is still served.
  ASSERT_TRUE(
      send_all(idle.back(), "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  EXPECT_THAT(read_to_end(idle.back()), HasSubstr("HTTP/1.1 200"));
  for (int fd : idle) ::close(fd);
}

}  // namespace
}  // namespace hylab::testing
