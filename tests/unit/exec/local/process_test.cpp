#include "exec/local/process.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>

namespace hylab::exec::local {
namespace {

using namespace std::chrono_literals;

bool wait_until(const std::function<bool()>& cond, std::chrono::seconds limit = 10s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return cond();
}

// Every process of session `sid`, its leader included, counted without the code under test.
std::size_t in_session(pid_t sid) {
  std::size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    n += ::getsid(static_cast<pid_t>(std::stol(name))) == sid;
  }
  return n;
}

// A session as a shim makes one: a leader (here bash running `script`) in its own session.
// The leader stays this test's child, so it is reaped at the end.
class Session {
 public:
  explicit Session(const char* script) {
    pid_ = ::fork();
    if (pid_ == 0) {
      ::setsid();
      ::execl("/bin/bash", "bash", "-c", script, nullptr);
      ::_exit(127);
    }
  }
  ~Session() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  pid_t pid() const { return pid_; }
  // The shim gone: the leader killed and reaped, its pid no longer alive.
  void end_leader() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }

 private:
  pid_t pid_ = -1;
};

TEST(SessionProcesses, ALiveLeaderMeansTheSessionIsNotAnOrphans) {
  Session s("sleep 30 & wait");
  ASSERT_TRUE(wait_until([&] { return process_start_time(s.pid()).has_value(); }));
  // Its leader runs: whoever has that pid is no lost shim, so nothing is offered to kill.
  EXPECT_TRUE(session_processes(s.pid()).empty());
  EXPECT_TRUE(session_processes(0).empty());
  EXPECT_TRUE(session_processes(1).empty());
}

TEST(StopSessions, ProcessesThatStopOnSigtermAreNotKilled) {
  // A pipe stage and a background job: three processes in the session besides the leader.
  Session s("sleep 30 | cat & sleep 31 & wait");
  ASSERT_TRUE(wait_until([&] { return in_session(s.pid()) >= 4; }));
  // The leader gone, its children are what a lost job leaves behind.
  s.end_leader();
  std::size_t orphans = session_processes(s.pid()).size();
  ASSERT_GE(orphans, 3u);
  auto t0 = std::chrono::steady_clock::now();
  auto stops = stop_sessions({s.pid()}, 10s, 5s);
  auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_EQ(stops.size(), 1u);
  EXPECT_EQ(stops[0].sid, s.pid());
  EXPECT_EQ(stops[0].signalled, orphans);
  EXPECT_TRUE(stops[0].left.empty());
  EXPECT_LT(took, 5s);  // SIGTERM was enough: no wait for the 10 s grace
  EXPECT_TRUE(session_processes(s.pid()).empty());
}

TEST(StopSessions, ProcessesIgnoringSigtermAreKilledAfterTheGrace) {
  // Ignored signals are inherited: neither bash nor its sleep stops on SIGTERM.
  Session s("trap '' TERM; bash -c 'sleep 30 & wait' & wait");
  ASSERT_TRUE(wait_until([&] { return in_session(s.pid()) >= 3; }));
  s.end_leader();
  ASSERT_GE(session_processes(s.pid()).size(), 2u);
  auto t0 = std::chrono::steady_clock::now();
  auto stops = stop_sessions({s.pid()}, 300ms, 5s);
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(stops[0].signalled, 2u);
  EXPECT_TRUE(stops[0].left.empty());
  EXPECT_GE(took, 300ms);
  EXPECT_TRUE(session_processes(s.pid()).empty());
}

}  // namespace
}  // namespace hylab::exec::local
