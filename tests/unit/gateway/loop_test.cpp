// The gateway's event loop on its own: coroutines, socket reads and writes, deadlines,
// sleepers, fairness, cross-thread posts and what is left suspended at the end. Sockets are
// real (socketpair); time is real but only bounds are asserted, never exact durations.
// Coroutine lambdas are named: a temporary closure would be gone (with its captures) while
// its coroutine is still suspended.
#include "gateway/loop.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <boost/asio/error.hpp>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <thread>

namespace hylab::gateway::loop {
namespace {

using namespace std::chrono_literals;

struct Pair {
  int a = -1;
  int b = -1;
  Pair() {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    a = fds[0];
    b = fds[1];
  }
};

Task<int> answer() { co_return 42; }
Task<int> fail() {
  throw std::runtime_error("boom");
  co_return 0;
}

TEST(LoopTest, TasksReturnValuesAndPassExceptionsToTheirAwaiter) {
  Loop loop;
  int value = 0;
  std::string caught;
  auto body1 = [&]() -> Task<void> {
    value = co_await answer();
    try {
      co_await fail();
    } catch (const std::exception& e) {
      caught = e.what();
    }
    loop.stop();
  };
  loop.spawn(body1());
  loop.run();
  EXPECT_EQ(value, 42);
  EXPECT_EQ(caught, "boom");
}

// A real fault: epoll refuses a regular file (EPERM), so Loop::add throws while a spawned
// coroutine holds something. The coroutine unwinds (what it held is given back: the gateway
// holds endpoint slots this way) and the loop counts the exception; the loop carries on.
TEST(LoopTest, AnExceptionThatEndsASpawnedCoroutineUnwindsItAndIsCounted) {
  Loop loop;
  std::FILE* file = std::tmpfile();
  ASSERT_NE(file, nullptr);
  int fd = ::dup(::fileno(file));
  bool released = false;
  struct Held {
    bool& released;
    ~Held() { released = true; }
  };
  auto body = [&]() -> Task<void> {
    Held held{released};
    Stream s(loop, fd);
    co_return;
  };
  loop.spawn(body());
  EXPECT_TRUE(released);
  EXPECT_EQ(loop.unhandled_exceptions(), 1u);
  bool ran = false;
  loop.post([&] {
    ran = true;
    loop.stop();
  });
  loop.run();
  EXPECT_TRUE(ran);
  std::fclose(file);  // Loop::add closed `fd` when epoll refused it
}

TEST(LoopTest, AReadWaitsForBytesThenSeesTheEndOfTheStream) {
  Loop loop;
  Pair p;
  std::string got;
  boost::system::error_code end;
  auto body2 = [&]() -> Task<void> {
    Stream s(loop, p.a);
    char buf[64];
    for (;;) {
      auto [ec, n] = co_await s.read_some(buf, sizeof buf);
      if (ec) {
        end = ec;
        break;
      }
      got.append(buf, n);
    }
    loop.stop();
  };
  loop.spawn(body2());
  std::thread writer([&] {
    std::this_thread::sleep_for(20ms);  // the reader is suspended by now, or not: both work
    ASSERT_EQ(::write(p.b, "hello", 5), 5);
    ::close(p.b);
  });
  loop.run();
  writer.join();
  EXPECT_EQ(got, "hello");
  EXPECT_EQ(end, boost::asio::error::eof);
}

TEST(LoopTest, AWriteLargerThanTheSocketBufferArrivesWholeAndInOrder) {
  Loop loop;
  Pair p;
  std::string data(8 << 20, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7 % 251);
  std::string got;
  int done = 0;
  auto body3 = [&]() -> Task<void> {
    Stream s(loop, p.a);
    auto [ec, n] = co_await s.write_all(std::string_view(data).substr(0, 1000),
                                        std::string_view(data).substr(1000));
    EXPECT_FALSE(ec);
    EXPECT_EQ(n, data.size());
    s.shutdown_send();
    if (++done == 2) loop.stop();
  };
  loop.spawn(body3());
  auto body4 = [&]() -> Task<void> {
    Stream s(loop, p.b);
    std::string buf(100000, '\0');
    for (;;) {
      auto [ec, n] = co_await s.read_some(buf.data(), buf.size());
      if (ec) break;
      got.append(buf.data(), n);
    }
    if (++done == 2) loop.stop();
  };
  loop.spawn(body4());
  loop.run();
  EXPECT_EQ(got.size(), data.size());
  EXPECT_TRUE(got == data);
}

TEST(LoopTest, ADeadlineFailsAPendingReadAndLaterOnesUntilItIsSetAgain) {
  Loop loop;
  Pair p;
  boost::system::error_code first, second, third;
  bool expired = false;
  auto t0 = Clock::now();
  Clock::duration waited{};
  auto body5 = [&]() -> Task<void> {
    Stream s(loop, p.a);
    char c;
    s.set_deadline(50ms);
    first = (co_await s.read_some(&c, 1)).ec;
    waited = Clock::now() - t0;
    expired = s.expired();
    second = (co_await s.read_some(&c, 1)).ec;  // still past it: fails at once
    EXPECT_EQ(::write(p.b, "x", 1), 1);
    s.set_deadline(10s);
    third = (co_await s.read_some(&c, 1)).ec;
    loop.stop();
  };
  loop.spawn(body5());
  loop.run();
  EXPECT_EQ(first, boost::asio::error::operation_aborted);
  EXPECT_TRUE(expired);
  EXPECT_GE(waited, 50ms);
  EXPECT_EQ(second, boost::asio::error::operation_aborted);
  EXPECT_FALSE(third);
}

TEST(LoopTest, ASleeperEndsAtItsTimeOrWhenWoken) {
  Loop loop;
  Sleeper woken(loop);
  Clock::duration slept{}, short_sleep{};
  int done = 0;
  auto body6 = [&]() -> Task<void> {
    auto t0 = Clock::now();
    co_await woken.until(Clock::now() + 60s);
    slept = Clock::now() - t0;
    if (++done == 2) loop.stop();
  };
  loop.spawn(body6());
  auto body7 = [&]() -> Task<void> {
    Sleeper s(loop);
    auto t0 = Clock::now();
    co_await s.until(Clock::now() + 20ms);
    short_sleep = Clock::now() - t0;
    woken.wake();
    if (++done == 2) loop.stop();
  };
  loop.spawn(body7());
  loop.run();
  EXPECT_GE(short_sleep, 20ms);
  EXPECT_LT(slept, 30s);
}

// A socket that always has bytes ready must not keep the loop from everything else.
TEST(LoopTest, AlwaysReadyStreamLetsOtherWorkRun) {
  Loop loop;
  Pair p;
  std::string block(64 * 1024, 'x');
  ASSERT_EQ(::write(p.b, block.data(), block.size()), static_cast<ssize_t>(block.size()));
  std::size_t read_when_other_ran = 0;
  std::size_t total = 0;
  int done = 0;
  auto body8 = [&]() -> Task<void> {
    Stream s(loop, p.a);
    char buf[16];
    while (total < block.size()) {
      auto [ec, n] = co_await s.read_some(buf, sizeof buf);
      if (ec) break;
      total += n;
    }
    if (++done == 2) loop.stop();
  };
  loop.spawn(body8());
  auto body9 = [&]() -> Task<void> {
    Sleeper s(loop);
    co_await s.until(Clock::now());  // due at once: runs at the loop's next turn
    read_when_other_ran = total;
    if (++done == 2) loop.stop();
  };
  loop.spawn(body9());
  loop.run();
  EXPECT_EQ(total, block.size());
  EXPECT_LT(read_when_other_ran, block.size());
}

// Busy polling spins only for its window after an event: an idle loop sleeps in epoll, and
// timers and reads still complete.
TEST(LoopTest, BusyPollingSpinsOnlyAfterEvents) {
  Loop loop;
  loop.set_busy_poll(std::chrono::microseconds(200));
  Pair p;
  std::string got;
  auto body = [&]() -> Task<void> {
    Sleeper s(loop);
    co_await s.until(Clock::now() + 300ms);  // idle: nothing else happens meanwhile
    EXPECT_EQ(::write(p.b, "ok", 2), 2);
    Stream st(loop, p.a);
    char buf[8];
    auto [ec, n] = co_await st.read_some(buf, sizeof buf);
    got.assign(buf, n);
    loop.stop();
  };
  loop.spawn(body());
  timespec cpu0{}, cpu1{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu0);
  loop.run();
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu1);
  double cpu = static_cast<double>(cpu1.tv_sec - cpu0.tv_sec) +
               static_cast<double>(cpu1.tv_nsec - cpu0.tv_nsec) / 1e9;
  EXPECT_EQ(got, "ok");
  EXPECT_LT(cpu, 0.15) << "the loop spun while idle";
}

struct Flag {
  bool* set;
  ~Flag() { *set = true; }
};

TEST(LoopTest, PostsFromOtherThreadsRunOnTheLoopAndStopDestroysWhatIsSuspended) {
  Pair p;
  bool destroyed = false;
  std::thread::id ran_on;
  {
    Loop loop;
    auto body10 = [&]() -> Task<void> {
      Flag flag{&destroyed};
      Stream s(loop, p.a);
      char c;
      co_await s.read_some(&c, 1);  // nothing ever comes
    };
    loop.spawn(body10());
    std::thread t([&] { loop.run(); });
    loop.post([&] { ran_on = std::this_thread::get_id(); });
    auto id = t.get_id();
    loop.stop();
    t.join();
    EXPECT_EQ(ran_on, id);
    EXPECT_TRUE(destroyed);
  }
  ::close(p.b);
}

}  // namespace
}  // namespace hylab::gateway::loop
