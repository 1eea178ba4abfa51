#include "exec/local/process.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "common/config.h"
#include "common/units.h"

extern char** environ;

namespace hylab::exec::local {

namespace json = boost::json;

std::optional<std::int64_t> process_start_time(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  if (!in) return std::nullopt;
  std::string line;
  std::getline(in, line);
  // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
  auto close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(line.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22; ++i) {
    if (!(rest >> field)) return std::nullopt;
    if (i == 3 && field == "Z") return std::nullopt;  // a zombie has exited
  }
  try {
    return std::stoll(field);
  } catch (...) {
    return std::nullopt;
  }
}

bool same_process(pid_t pid, std::int64_t start_time) {
  auto t = process_start_time(pid);
  return t && *t == start_time;
}

namespace {

// Atomic against a crash of this process or the server (rename), not of the machine:
// no fsync, which would cost milliseconds on every job start.
bool write_file_atomic(const std::string& path, const std::string& data, mode_t mode) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return false;
  std::size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      return false;
    }
    off += static_cast<std::size_t>(n);
  }
  ::close(fd);
  return ::rename(tmp.c_str(), path.c_str()) == 0;
}

}  // namespace

Result<pid_t> spawn_shim(const Launch& l) {
  json::object o;
  o["job_id"] = l.job_id;
  o["workdir"] = l.workdir;
  json::array env;
  for (const auto& e : l.env) env.emplace_back(e);
  o["env"] = std::move(env);
  o["setup"] = l.setup;
  o["run"] = l.run;
  o["log_max_bytes"] = l.log_max_bytes;
  o["cancel_grace_seconds"] = l.cancel_grace_seconds;
  std::string launch_path = l.job_dir + "/launch.json";
  if (!write_file_atomic(launch_path, json::serialize(o), 0600)) {
    return Error{Errc::kIo, fmt::format("cannot write {}: {}", launch_path, std::strerror(errno))};
  }
  // /proc/self/exe, not the path it links to: that stays valid after an upgrade replaced
  // the binary on disk (the link then reads "... (deleted)").
  std::string exe = "/proc/self/exe";
  std::string err_path = l.job_dir + "/shim.err";
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, err_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  // Nothing of the server (its listening socket, the database) may leak into a job
  // that outlives it.
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // SIGTERM and SIGINT stay blocked until the shim has its handlers: a cancel right after
  // the start is then forwarded to the job, not fatal to the shim.
  sigset_t blocked;
  sigemptyset(&blocked);
  sigaddset(&blocked, SIGTERM);
  sigaddset(&blocked, SIGINT);
  posix_spawnattr_setsigmask(&attr, &blocked);
  sigset_t defaults;
  sigfillset(&defaults);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::string dir = l.job_dir;
  char arg0[] = "hylab";
  char arg1[] = "__shim";
  char* argv[] = {arg0, arg1, dir.data(), nullptr};
  pid_t pid = 0;
  int rc = ::posix_spawn(&pid, exe.c_str(), &fa, &attr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return Error{Errc::kIo, fmt::format("cannot start {}: {}", exe, std::strerror(rc))};
  return pid;
}

std::optional<ExitStatus> read_exit_status(const std::string& job_dir) {
  auto text = read_text_file(job_dir + "/status.json", 4096);
  if (!text) return std::nullopt;
  boost::system::error_code ec;
  json::value v = json::parse(*text, ec);
  if (ec || !v.is_object()) return std::nullopt;
  ExitStatus s;
  const auto& o = v.as_object();
  if (auto* p = o.if_contains("exit_code"); p && p->is_int64())
    s.exit_code = static_cast<int>(p->as_int64());
  if (auto* p = o.if_contains("signal"); p && p->is_int64())
    s.signal = static_cast<int>(p->as_int64());
  if (auto* p = o.if_contains("cancelled"); p && p->is_bool()) s.cancelled = p->as_bool();
  return s;
}

std::optional<pid_t> running_shim(const std::string& job_dir) {
  auto text = read_text_file(job_dir + "/shim.json", 4096);
  if (!text) return std::nullopt;
  boost::system::error_code ec;
  json::value v = json::parse(*text, ec);
  if (ec || !v.is_object() || !v.as_object().contains("pid") || !v.at("pid").is_int64())
    return std::nullopt;
  auto pid = static_cast<pid_t>(v.at("pid").as_int64());
  auto cmdline = read_text_file(fmt::format("/proc/{}/cmdline", pid), 1 << 16);
  if (!cmdline || !process_start_time(pid)) return std::nullopt;
  std::string want = std::string("__shim") + '\0' + job_dir + '\0';
  if (cmdline->find(want) == std::string::npos) return std::nullopt;
  return pid;
}

std::optional<ShimInfo> read_shim_info(const std::string& job_dir) {
  auto text = read_text_file(job_dir + "/shim.json", 4096);
  if (!text) return std::nullopt;
  boost::system::error_code ec;
  json::value v = json::parse(*text, ec);
  if (ec || !v.is_object()) return std::nullopt;
  const auto& o = v.as_object();
  auto* pid = o.if_contains("pid");
  auto* pgid = o.if_contains("pgid");
  if (!pid || !pid->is_int64() || !pgid || !pgid->is_int64()) return std::nullopt;
  return ShimInfo{static_cast<pid_t>(pid->as_int64()), static_cast<pid_t>(pgid->as_int64())};
}

namespace {

// State and session of PID from /proc/PID/stat (fields 3 and 6).
struct ProcStat {
  char state = '?';
  pid_t session = 0;
};

std::optional<ProcStat> proc_stat(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  auto close = line.rfind(')');  // the command name may hold spaces and parentheses
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(line.substr(close + 2));
  ProcStat st;
  long ppid = 0, pgrp = 0, session = 0;
  if (!(rest >> st.state >> ppid >> pgrp >> session)) return std::nullopt;
  st.session = static_cast<pid_t>(session);
  return st;
}

bool alive(const ProcStat& st) { return st.state != 'Z' && st.state != 'X'; }

}  // namespace

std::vector<pid_t> session_processes(pid_t sid) {
  std::vector<pid_t> out;
  if (sid <= 1) return out;
  // The kernel reuses a pid only once no process has it as its pid, group or session: a
  // live process with the pid `sid` means the old session is empty or that this one is a
  // stranger's.
  if (auto leader = proc_stat(sid); leader && alive(*leader)) return out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    auto pid = static_cast<pid_t>(std::stol(name));
    if (auto st = proc_stat(pid); st && alive(*st) && st->session == sid) out.push_back(pid);
  }
  return out;
}

std::vector<SessionStop> stop_sessions(const std::vector<pid_t>& sids,
                                       std::chrono::milliseconds grace,
                                       std::chrono::milliseconds deadline) {
  using Clock = std::chrono::steady_clock;
  std::vector<SessionStop> out;
  std::vector<std::set<pid_t>> signalled(sids.size());
  for (pid_t sid : sids) out.push_back({sid, 0, {}});
  auto kill_at = Clock::now() + grace;
  bool killing = false;
  for (;;) {
    bool any = false;
    if (!killing && Clock::now() >= kill_at) killing = true;
    for (std::size_t i = 0; i < sids.size(); ++i) {
      out[i].left = session_processes(sids[i]);
      for (pid_t pid : out[i].left) {
        // SIGTERM once to each (a process may be saving a checkpoint); SIGKILL on every
        // round once the grace is over, so a child forked meanwhile goes too.
        bool first = signalled[i].insert(pid).second;
        if (killing || first) ::kill(pid, killing ? SIGKILL : SIGTERM);
      }
      out[i].signalled = signalled[i].size();
      any = any || !out[i].left.empty();
    }
    if (!any) return out;
    if (killing && Clock::now() >= kill_at + deadline) return out;
    // These are not our children and a session has no descriptor to wait on: look again
    // shortly (/proc is cheap to read).
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// ---- the shim ----

namespace {

volatile sig_atomic_t g_terminate = 0;
void on_terminate(int) { g_terminate = 1; }

std::string str_or(const json::object& o, const char* key) {
  auto* p = o.if_contains(key);
  return p && p->is_string() ? std::string(p->as_string()) : std::string();
}

class CappedLog {
 public:
  CappedLog(int fd, std::uint64_t cap) : fd_(fd), cap_(cap) {}
  void write(const char* data, std::size_t n) {
    if (written_ >= cap_) return;
    std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(n, cap_ - written_));
    write_all(data, take);
    written_ += take;
    if (written_ >= cap_) {
      std::string note =
          fmt::format("\n[hylab: log truncated at {} bytes; the job keeps running]\n", cap_);
      write_all(note.data(), note.size());
    }
  }

 private:
  void write_all(const char* p, std::size_t n) {
    while (n > 0) {
      ssize_t w = ::write(fd_, p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return;
      p += w;
      n -= static_cast<std::size_t>(w);
    }
  }
  int fd_;
  std::uint64_t cap_;
  std::uint64_t written_ = 0;
};

}  // namespace

int shim_main(const std::string& job_dir) {
  auto text = read_text_file(job_dir + "/launch.json", 16 << 20);
  if (!text) {
    fmt::print(stderr, "hylab shim: {}\n", text.error().message);
    return 1;
  }
  boost::system::error_code ec;
  json::value v = json::parse(*text, ec);
  if (ec || !v.is_object()) {
    fmt::print(stderr, "hylab shim: {}/launch.json is not valid JSON\n", job_dir);
    return 1;
  }
  const json::object& o = v.as_object();
  std::string workdir = str_or(o, "workdir");
  std::string setup = str_or(o, "setup");
  std::string run = str_or(o, "run");
  std::uint64_t cap = o.if_contains("log_max_bytes")
                          ? json::value_to<std::uint64_t>(o.at("log_max_bytes"))
                          : 64ULL << 20;
  double grace =
      o.if_contains("cancel_grace_seconds") ? o.at("cancel_grace_seconds").to_number<double>() : 10;
  std::vector<std::string> env;
  if (auto* e = o.if_contains("env"); e && e->is_array()) {
    for (const auto& x : e->as_array()) {
      if (x.is_string()) env.emplace_back(x.as_string());
    }
  }
  // setup and run as SkyPilot runs them: setup first, run only when setup succeeded.
  // Without setup, bash runs `run` itself: one process start less per job.
  std::string script = run;
  if (!setup.empty()) {
    script = "bash -c \"$HYLAB_SETUP\" || exit $?\nexec bash -c \"$HYLAB_RUN\"\n";
    env.push_back("HYLAB_SETUP=" + setup);
    env.push_back("HYLAB_RUN=" + run);
  }

  int log_fd =
      ::open((job_dir + "/output.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log_fd < 0) {
    fmt::print(stderr, "hylab shim: cannot open {}/output.log: {}\n", job_dir,
               std::strerror(errno));
    return 1;
  }
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return 1;

  struct sigaction sa {};
  sa.sa_handler = on_terminate;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  ::signal(SIGHUP, SIG_IGN);
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t unblock;
  sigemptyset(&unblock);
  ::sigprocmask(SIG_SETMASK, &unblock, nullptr);

  std::vector<char*> envp;
  envp.reserve(env.size() + 1);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  char bash[] = "/bin/bash";
  char dash_c[] = "-c";
  std::vector<char*> argv{bash, dash_c, script.data(), nullptr};

  pid_t child = ::fork();
  if (child < 0) return 1;
  if (child == 0) {
    ::setpgid(0, 0);
    ::signal(SIGTERM, SIG_DFL);
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGHUP, SIG_DFL);
    ::signal(SIGPIPE, SIG_DFL);
    ::dup2(pipe_fds[1], 1);
    ::dup2(pipe_fds[1], 2);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    if (!workdir.empty() && ::chdir(workdir.c_str()) != 0) {
      std::string msg =
          fmt::format("hylab: cannot enter workdir {}: {}\n", workdir, std::strerror(errno));
      (void)!::write(2, msg.data(), msg.size());
      ::_exit(126);
    }
    ::execve(bash, argv.data(), envp.data());
    std::string msg = fmt::format("hylab: cannot run /bin/bash: {}\n", std::strerror(errno));
    (void)!::write(2, msg.data(), msg.size());
    ::_exit(127);
  }
  ::setpgid(child, child);  // also here: no race with a cancel before the child runs
  ::close(pipe_fds[1]);
  {
    std::string info = json::serialize(json::object{{"pid", ::getpid()}, {"pgid", child}});
    write_file_atomic(job_dir + "/shim.json", info, 0600);
  }

  CappedLog log(log_fd, cap);
  using Clock = std::chrono::steady_clock;
  bool term_sent = false;
  bool kill_sent = false;
  Clock::time_point kill_at{};
  int status = 0;
  bool exited = false;
  std::optional<Clock::time_point> drain_until;
  char buf[65536];
  for (;;) {
    if (g_terminate && !term_sent) {
      ::kill(-child, SIGTERM);
      term_sent = true;
      kill_at = Clock::now() + from_seconds(grace);
    }
    if (term_sent && !kill_sent && !exited && Clock::now() >= kill_at) {
      ::kill(-child, SIGKILL);
      kill_sent = true;
    }
    pollfd p{pipe_fds[0], POLLIN, 0};
    int r = ::poll(&p, 1, 50);
    if (r > 0) {
      ssize_t n = ::read(pipe_fds[0], buf, sizeof buf);
      if (n > 0) {
        log.write(buf, static_cast<std::size_t>(n));
        continue;
      }
      if (n == 0 && exited) break;  // EOF after the job ended: every byte is in the log
      if (n == 0) {
        // Every writer closed the pipe: wait for the exit only.
        pipe_fds[0] = -1;
      }
    }
    if (!exited) {
      pid_t w = ::waitpid(child, &status, WNOHANG);
      if (w == child) {
        exited = true;
        drain_until = Clock::now() + std::chrono::seconds(2);
      }
    }
    if (exited && (pipe_fds[0] < 0 || Clock::now() >= *drain_until)) break;
  }
  // Daemons the job left behind in its group go with it.
  ::kill(-child, SIGKILL);
  json::object st;
  if (WIFEXITED(status)) st["exit_code"] = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) st["signal"] = WTERMSIG(status);
  st["cancelled"] = term_sent;
  write_file_atomic(job_dir + "/status.json", json::serialize(st), 0600);
  return 0;
}

}  // namespace hylab::exec::local
