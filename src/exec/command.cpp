// Running a command to its end (see command.h).
#include "exec/command.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

namespace hylab::exec {

Result<CommandResult> run_command(const std::vector<std::string>& argv, const CommandOptions& opt) {
  if (argv.empty()) return Error{Errc::kInternal, "run_command: no command"};
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0)
    return Error{Errc::kIo, fmt::format("{}: pipe: {}", argv[0], std::strerror(errno))};
  std::vector<std::string> env_entries;
  for (const auto& [k, v] : opt.env) env_entries.push_back(k + "=" + v);
  pid_t pid = ::fork();
  if (pid < 0) return Error{Errc::kIo, fmt::format("{}: fork: {}", argv[0], std::strerror(errno))};
  if (pid == 0) {
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    ::setpgid(0, 0);  // killed as a group at the deadline
    for (auto& e : env_entries) ::putenv(e.data());
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    std::fprintf(stderr, "cannot run %s: %s\n", args[0], std::strerror(errno));
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  ::fcntl(in[1], F_SETFL, O_NONBLOCK);
  CommandResult r;
  std::size_t written = 0;
  if (opt.input.empty()) {
    ::close(in[1]);
    in[1] = -1;
  }
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(static_cast<long>(opt.timeout_seconds * 1000));
  bool too_much = false;
  int open_fds = 2;
  while (open_fds > 0 || in[1] >= 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) {
      r.timed_out = true;
      break;
    }
    pollfd fds[3] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}, {in[1], POLLOUT, 0}};
    if (::poll(fds, 3, static_cast<int>(left)) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[65536];
      ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      std::string& to = i == 0 ? r.out : r.err;
      if (n <= 0) {
        ::close(fds[i].fd);
        (i == 0 ? out[0] : err[0]) = -1;
        --open_fds;
        continue;
      }
      if (to.size() + static_cast<std::size_t>(n) > opt.max_output) {
        too_much = true;
        continue;
      }
      to.append(buf, static_cast<std::size_t>(n));
    }
    if (in[1] >= 0 && (fds[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
      // A command that exits without reading its input must not kill us with SIGPIPE:
      // blocked for this write, and a pending one taken away.
      sigset_t pipe_set, old_set;
      sigemptyset(&pipe_set);
      sigaddset(&pipe_set, SIGPIPE);
      ::pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
      ssize_t n = ::write(in[1], opt.input.data() + written, opt.input.size() - written);
      if (n < 0 && errno == EPIPE) {
        timespec zero{0, 0};
        ::sigtimedwait(&pipe_set, nullptr, &zero);
      }
      ::pthread_sigmask(SIG_SETMASK, &old_set, nullptr);
      if (n > 0) written += static_cast<std::size_t>(n);
      if (n < 0 || written == opt.input.size()) {
        ::close(in[1]);
        in[1] = -1;
      }
    }
    if (too_much) break;
  }
  for (int fd : {in[1], out[0], err[0]})
    if (fd >= 0) ::close(fd);
  if (r.timed_out || too_much) ::kill(-pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (too_much)
    return Error{Errc::kIo, fmt::format("{} printed more than {} bytes", argv[0], opt.max_output)};
  return r;
}

}  // namespace hylab::exec
