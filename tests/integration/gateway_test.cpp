// The inference gateway end to end: the real `hylab gateway` binary between real HTTP
// clients and upstreams on loopback (tests/integration/upstream.py).
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include <thread>

#include "serve_harness.h"

namespace hylab::testing {
namespace {

using ::testing::HasSubstr;

class Process {
 public:
  Process() = default;
  Process(const Process&) = delete;
  ~Process() { stop(); }
  void start(std::vector<std::string> argv, const std::string& log,
             std::vector<std::string> env = {}) {
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // gone with the test, even if it crashes
      FILE* f = std::freopen(log.c_str(), "a", stdout);
      (void)f;
      ::dup2(1, 2);
      for (const auto& e : env) ::putenv(const_cast<char*>(e.c_str()));
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      ::execvp(args[0], args.data());
      ::_exit(127);
    }
  }
  void stop(int sig = SIGKILL) {
    if (pid_ <= 0) return;
    ::kill(pid_, sig);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
};

std::string slurp(const std::string& path) {
  auto t = read_text_file(path, 1 << 24);
  return t ? *t : std::string();
}

int lines(const std::string& path) {
  std::string s = slurp(path);
  return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
}

class GatewayTest : public ::testing::Test {
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

  // An upstream named NAME; returns its port.
  int upstream(const std::string& name, const std::string& hold = "") {
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
    std::ofstream(path(name + ".rec")).close();
    p->start(argv, path(name + ".log"));
    upstreams_.push_back(std::move(p));
    EXPECT_TRUE(wait_until([&] { return std::filesystem::exists(path(name + ".port")); }));
    return std::stoi(slurp(path(name + ".port")));
  }

  void start_gateway(const std::string& config) {
    std::ofstream(path("hylab.yaml")) << config;
    gateway_.start(
        {HYLAB_BINARY, "gateway", "--config", path("hylab.yaml"), "--port-file", path("gw.json")},
        path("gateway.log"), {"HYLAB_TEST_CLOUD_KEY=cloud-secret-123"});
    ASSERT_TRUE(wait_until([&] { return std::filesystem::exists(path("gw.json")); }))
        << slurp(path("gateway.log"));
    auto v = json::parse(slurp(path("gw.json")));
    port_ = static_cast<int>(v.at("listen").as_int64());
    admin_ = static_cast<int>(v.at("admin").as_int64());
  }

  std::string config(int local_port, int cloud_port, int max_inflight = 1) const {
    return fmt::format(R"(gateway:
  listen: 127.0.0.1:0
  admin: 127.0.0.1:0
  threads: 2
  local:
    - {{name: gpu-box, url: "http://127.0.0.1:{}", max_inflight: {}}}
  cloud:
    - {{name: cloud-a, url: "http://127.0.0.1:{}", max_inflight: 100, api_key_env: HYLAB_TEST_CLOUD_KEY,
       usd_per_1k_input: 1.0}}
  timeouts: {{connect: 1s, response: 10s}}
  limits: {{max_body: 64KiB, max_header: 8KiB}}
)",
                       local_port, max_inflight, cloud_port);
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

TEST_F(GatewayTest, LocalFirstThenOverflowToCloudWithTheKey) {
  std::string hold = path("hold");
  int local = upstream("local", hold);
  int cloud = upstream("cloud");
  start_gateway(config(local, cloud));
  auto first = send("/v1/models");
  EXPECT_EQ(first.status, 200);
  EXPECT_EQ(first.headers.at("x-hylab-route"), "local; endpoint=gpu-box; reason=local-first");
  EXPECT_THAT(first.body, HasSubstr("\"upstream\": \"local\""));

  // Take the local endpoint's only slot with a request it holds.
  std::ofstream(hold).close();
  std::thread held([&] {
    auto r = send("/v1/chat/completions", R"({"model":"m"})");
    EXPECT_EQ(r.headers.at("x-hylab-route"), "local; endpoint=gpu-box; reason=local-first");
  });
  ASSERT_TRUE(wait_until([&] { return lines(path("local.rec")) == 2; }));
  auto over = send("/v1/chat/completions", R"({"model":"m"})");
  EXPECT_EQ(over.status, 200);
  EXPECT_EQ(over.headers.at("x-hylab-route"), "cloud; endpoint=cloud-a; reason=overflow");
  EXPECT_THAT(over.body, HasSubstr("\"upstream\": \"cloud\""));
  std::filesystem::remove(hold);
  held.join();
  // The cloud got the API key from the environment; the local endpoint never did.
  EXPECT_THAT(slurp(path("cloud.rec")),
              HasSubstr("\"authorization\": \"Bearer cloud-secret-123\""));
  EXPECT_THAT(slurp(path("local.rec")), ::testing::Not(HasSubstr("authorization")));
  std::string m = metrics();
  EXPECT_THAT(m, HasSubstr("hylab_gateway_overflow_total 1"));
  EXPECT_THAT(m,
              HasSubstr("hylab_gateway_request_duration_seconds_count{environment=\"local\"} 2"));
  EXPECT_THAT(m,
              HasSubstr("hylab_gateway_request_duration_seconds_count{environment=\"cloud\"} 1"));
  EXPECT_THAT(
      m, HasSubstr(
             "hylab_gateway_request_duration_seconds_bucket{environment=\"cloud\",le=\"+Inf\"} 1"));
  // The key never shows in the gateway's output.
  EXPECT_THAT(slurp(path("gateway.log")), ::testing::Not(HasSubstr("cloud-secret-123")));
}

TEST_F(GatewayTest, SensitiveRequestsNeverLeave) {
  std::string hold = path("hold");
  int local = upstream("local", hold);
  int cloud = upstream("cloud");
  start_gateway(config(local, cloud));
  // With a free local slot a sensitive request runs locally, without the marking header.
  auto ok = send("/v1/embeddings", R"({"input":"patient 7"})", {{"X-Hylab-Data", "sensitive"}});
  EXPECT_EQ(ok.status, 200);
  EXPECT_THAT(ok.headers.at("x-hylab-route"), HasSubstr("local"));
  EXPECT_THAT(slurp(path("local.rec")), ::testing::Not(HasSubstr("x-hylab-data")));

  std::ofstream(hold).close();
  std::thread held([&] { send("/v1/chat/completions", "{}"); });
  ASSERT_TRUE(wait_until([&] { return lines(path("local.rec")) == 2; }));
  for (int i = 0; i < 5; ++i) {
    auto r = send("/v1/embeddings", R"({"input":"patient 7"})", {{"X-Hylab-Data", "SENSITIVE"}});
    EXPECT_EQ(r.status, 503);
    EXPECT_EQ(r.headers.at("retry-after"), "1");
    EXPECT_THAT(r.body, HasSubstr("sensitive request: it never leaves the lab"));
  }
  std::filesystem::remove(hold);
  held.join();
  EXPECT_EQ(lines(path("cloud.rec")), 0);
  EXPECT_THAT(slurp(path("cloud.rec")), ::testing::Not(HasSubstr("patient")));
  std::string m = metrics();
  EXPECT_THAT(m, HasSubstr("hylab_gateway_sensitive_to_cloud_total 0"));
  EXPECT_THAT(m, HasSubstr("hylab_gateway_sensitive_refused_total 5"));
}

TEST_F(GatewayTest, LocalDownFailsOverToCloudWithoutFailedRequests) {
  int local = upstream("local");
  int cloud = upstream("cloud");
  start_gateway(config(local, cloud, 4));
  EXPECT_THAT(send("/a").headers.at("x-hylab-route"), HasSubstr("local"));
  upstreams_.front()->stop();  // the local server dies
  for (int i = 0; i < 20; ++i) {
    auto r = send("/after-" + std::to_string(i));
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.headers.at("x-hylab-route"), "cloud; endpoint=cloud-a; reason=failover");
  }
  EXPECT_EQ(lines(path("cloud.rec")), 20);
  std::string m = metrics();
  EXPECT_THAT(m, HasSubstr("hylab_gateway_failover_total 20"));
  // Ejected after a failure (for 1 s, then 2 s ...): most requests went straight to the cloud
  // without trying the dead endpoint again.
  std::string key =
      "hylab_gateway_upstream_failures_total{environment=\"local\",endpoint=\"gpu-box\"} ";
  auto at = m.find(key);
  ASSERT_NE(at, std::string::npos);
  int failures = std::stoi(m.substr(at + key.size()));
  EXPECT_GE(failures, 1);
  EXPECT_LT(failures, 10);
}

TEST_F(GatewayTest, NoEndpointLeftSaysWhy) {
  int local = upstream("local");
  start_gateway(fmt::format(R"(gateway:
  listen: 127.0.0.1:0
  admin: 127.0.0.1:0
  local:
    - {{name: only, url: "http://127.0.0.1:{}"}}
)",
                            local));
  upstreams_.front()->stop();
  auto r = send("/x");
  EXPECT_EQ(r.status, 503);
  EXPECT_THAT(r.body, HasSubstr("local endpoints are down, and no cloud endpoint is configured"));
  EXPECT_EQ(r.headers.at("x-hylab-route"), "none; reason=failover");
}

TEST_F(GatewayTest, ModelIsRewrittenOnOverflowAndTheBudgetStopsIt) {
  std::string hold = path("hold");
  int local = upstream("local", hold);
  int cloud = upstream("cloud");
  // $1 per 1k input tokens: each answer's 10 prompt tokens cost $0.01; budget $0.015.
  start_gateway(config(local, cloud) +
                "  models: {llama3.1-8b: gpt-4o-mini}\n  daily_cloud_budget_usd: 0.015\n");
  std::string body = R"({"model":"llama3.1-8b","messages":[{"role":"user","content":"hi"}]})";
  auto at_home = send("/v1/chat/completions", body);
  EXPECT_THAT(at_home.body, HasSubstr("\"model\": \"llama3.1-8b\""));
  std::ofstream(hold).close();
  std::thread held([&] { send("/v1/chat/completions", body); });
  ASSERT_TRUE(wait_until([&] { return lines(path("local.rec")) == 2; }));
  for (int i = 0; i < 2; ++i) {
    auto r = send("/v1/chat/completions", body);
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_THAT(r.body, HasSubstr("\"model\": \"gpt-4o-mini\""));  // rewritten for the cloud
  }
  auto refused = send("/v1/chat/completions", body);
  EXPECT_EQ(refused.status, 429);
  EXPECT_THAT(refused.body, HasSubstr("the daily cloud budget of $0.015 is spent ($0.02 today)"));
  EXPECT_EQ(refused.headers.at("x-hylab-route"), "none; reason=budget");
  std::filesystem::remove(hold);
  held.join();
  EXPECT_EQ(lines(path("cloud.rec")), 2);
  std::string m = metrics();
  EXPECT_THAT(m, HasSubstr("hylab_gateway_cloud_spend_today_usd 0.02"));
  EXPECT_THAT(
      m,
      HasSubstr("hylab_gateway_input_tokens_total{environment=\"cloud\",endpoint=\"cloud-a\"} 20"));
  EXPECT_THAT(
      m, HasSubstr(
             "hylab_gateway_output_tokens_total{environment=\"local\",endpoint=\"gpu-box\"} 40"));
  EXPECT_THAT(m, HasSubstr("hylab_gateway_budget_refused_total 1"));
  // The same counters through `hylab gateway stats`.
  std::string cmd =
      fmt::format("{} gateway stats --admin 127.0.0.1:{} -o json 2>&1", HYLAB_BINARY, admin_);
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string stats;
  char buf[4096];
  std::size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, p)) > 0) stats.append(buf, got);
  EXPECT_EQ(::pclose(p), 0) << stats;
  bool found = false;
  json::value rows = json::parse(stats);
  for (const auto& row : rows.as_array()) {
    if (row.at("metric").as_string() == "hylab_gateway_budget_refused_total") {
      found = true;
      EXPECT_EQ(row.at("value").to_number<double>(), 1);
    }
  }
  EXPECT_TRUE(found) << stats;
}

TEST_F(GatewayTest, OversizedAndMalformedRequests) {
  int local = upstream("local");
  int cloud = upstream("cloud");
  start_gateway(config(local, cloud));
  auto big = send("/v1/chat/completions", std::string(100 * 1024, 'x'));
  EXPECT_EQ(big.status, 413);
  EXPECT_THAT(big.body, HasSubstr("request body over the gateway's limit of 65536 bytes"));
  auto headers = send("/x", "", {{"X-Big", std::string(10 * 1024, 'h')}});
  EXPECT_EQ(headers.status, 431);
  EXPECT_EQ(lines(path("local.rec")), 0);
  EXPECT_EQ(lines(path("cloud.rec")), 0);
}

}  // namespace
}  // namespace hylab::testing
