// Test harness for the control plane: starts the real `hylab serve` binary on
// 127.0.0.1 (port 0) with a throw-away state directory, talks to it over HTTP, and
// stops it (and every job process it left) at the end. Waits are on conditions with
// deadlines, never plain sleeps.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>

#include "common/config.h"
#include "common/http_client.h"

namespace hylab::testing {

namespace json = boost::json;

inline bool wait_until(const std::function<bool()>& cond, double seconds = 20) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return cond();
}

class ServeHarness {
 public:
  explicit ServeHarness(std::string extra_config = "") {
    dir_ = std::filesystem::temp_directory_path() /
           ("hylab-serve-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    config_ = (dir_ / "hylab.yaml").string();
    std::ofstream(config_)
        << "lab:\n  gpus: [{model: RTX4090, count: 2}]\n  cpus: 8\n"
        << "server:\n  listen: 127.0.0.1:0\n  state_dir: state\n  cancel_grace: 1s\n"
        << "  max_body: 64KiB\n"
        << extra_config;
  }

  ~ServeHarness() {
    stop(SIGKILL);
    // Jobs outlive the server by design: end every one this test started.
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir_ / "state" / "jobs", ec)) {
      auto text = read_text_file((e.path() / "shim.json").string(), 4096);
      if (!text) continue;
      json::value v = json::parse(*text);
      ::kill(-static_cast<pid_t>(v.at("pgid").as_int64()), SIGKILL);
      ::kill(static_cast<pid_t>(v.at("pid").as_int64()), SIGKILL);
    }
    std::filesystem::remove_all(dir_, ec);
  }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::string state_dir() const { return (dir_ / "state").string(); }
  const std::string& config() const { return config_; }
  const std::string& url() const { return url_; }
  const std::string& token() const { return token_; }
  pid_t pid() const { return pid_; }

  // Starts the server and waits until it has announced its URL.
  void start() {
    std::filesystem::remove(dir_ / "state" / "server.json");
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // gone with the test, even if it crashes
      std::string log = path("serve.log");
      FILE* f = std::freopen(log.c_str(), "a", stdout);
      (void)f;
      ::dup2(1, 2);
      ::execl(HYLAB_BINARY, "hylab", "serve", "--config", config_.c_str(), "--no-nvml", nullptr);
      ::_exit(127);
    }
    bool up = wait_until([&] {
      auto text = read_text_file(state_dir() + "/server.json", 4096);
      if (!text) return false;
      boost::system::error_code ec;
      json::value v = json::parse(*text, ec);
      if (ec || v.at("pid").as_int64() != pid_) return false;
      url_ = std::string(v.at("url").as_string());
      return true;
    });
    ASSERT_TRUE(up) << "hylab serve did not start: " << *read_text_file(path("serve.log"), 1 << 20);
    auto tok = read_text_file(state_dir() + "/token", 4096);
    ASSERT_TRUE(tok);
    token_ = tok->substr(0, tok->find('\n'));
  }

  // Sends `sig` and waits for the server to exit; returns its exit status.
  int stop(int sig = SIGTERM) {
    if (pid_ <= 0) return -1;
    ::kill(pid_, sig);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

  HttpClientResponse request(const std::string& method, const std::string& target,
                             const std::string& body = "",
                             std::optional<std::string> token = std::nullopt) const {
    HttpClientRequest r;
    r.method = method;
    r.url = url_ + target;
    std::string t = token.value_or(token_);
    if (!t.empty()) r.headers.emplace_back("Authorization", "Bearer " + t);
    r.body = body;
    r.timeout_seconds = 20;
    auto resp = http_request(r);
    EXPECT_TRUE(resp) << (resp ? "" : resp.error().message);
    return resp ? *resp : HttpClientResponse{};
  }

  json::value get_json(const std::string& target) const {
    auto r = request("GET", target);
    EXPECT_EQ(r.status, 200) << r.body;
    return json::parse(r.body);
  }

  // Submits a spec; returns the job id (0 on failure).
  std::int64_t submit(const std::string& spec, int priority = 0) const {
    auto r = request("POST", "/v1/jobs?priority=" + std::to_string(priority), spec);
    EXPECT_EQ(r.status, 201) << r.body;
    if (r.status != 201) return 0;
    return json::parse(r.body).at("id").as_int64();
  }

  json::object job(std::int64_t id) const {
    return get_json("/v1/jobs/" + std::to_string(id)).as_object();
  }
  std::string state(std::int64_t id) const { return std::string(job(id).at("state").as_string()); }

  bool wait_state(std::int64_t id, const std::string& want, double seconds = 20) const {
    return wait_until([&] { return state(id) == want; }, seconds);
  }

  const std::string& config_path() const { return config_; }
  std::string dir() const { return dir_.string(); }

  std::string log(std::int64_t id) const {
    return request("GET", "/v1/jobs/" + std::to_string(id) + "/logs").body;
  }

 private:
  static int& counter() {
    static int c = 0;
    return c;
  }
  std::filesystem::path dir_;
  std::string config_;
  std::string url_;
  std::string token_;
  pid_t pid_ = -1;
};

}  // namespace hylab::testing
