// The inference gateway end to end: the real `hylab gateway` binary between real HTTP
// clients and upstreams on loopback (tests/integration/upstream.py).
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "gateway_harness.h"

namespace hylab::testing {
namespace {

using ::testing::HasSubstr;

class GatewayTest : public GatewayHarness {
 protected:
  std::string config(int local_port, int cloud_port, int max_inflight = 1,
                     const std::string& timeouts = "connect: 1s, response: 10s") const {
    return fmt::format(R"(gateway:
  listen: 127.0.0.1:0
  admin: 127.0.0.1:0
  threads: 2
  local:
    - {{name: gpu-box, url: "http://127.0.0.1:{}", max_inflight: {}}}
  cloud:
    - {{name: cloud-a, url: "http://127.0.0.1:{}", max_inflight: 100, api_key_env: HYLAB_TEST_CLOUD_KEY,
       usd_per_1k_input: 1.0}}
  timeouts: {{{}}}
  limits: {{max_body: 64KiB, max_header: 8KiB}}
)",
                       local_port, max_inflight, cloud_port, timeouts);
  }

  // Two slots locally; the cloud endpoint's `cloud_extra` (", max_inflight: N" or nothing).
  static std::string slots_config(int local_port, int cloud_port, const std::string& cloud_extra,
                                  const std::string& connect) {
    return fmt::format(R"(gateway:
  listen: 127.0.0.1:0
  admin: 127.0.0.1:0
  threads: 2
  local:
    - {{name: gpu-box, url: "http://127.0.0.1:{}", max_inflight: 2}}
  cloud:
    - {{name: cloud-a, url: "http://127.0.0.1:{}", api_key_env: HYLAB_TEST_CLOUD_KEY{}}}
  timeouts: {{{}, response: 10s}}
)",
                       local_port, cloud_port, cloud_extra, connect);
  }

  // The statuses of `n` chat requests sent at once.
  std::vector<int> concurrent_chats(std::size_t n) {
    std::vector<int> status(n, 0);
    std::vector<std::thread> clients;
    for (std::size_t i = 0; i < n; ++i) {
      clients.emplace_back([&, i] { status[i] = send("/v1/chat/completions", "{}").status; });
    }
    for (auto& t : clients) t.join();
    return status;
  }

  // A gateway config with one local endpoint and nothing else.
  static std::string local_only(const std::string& name, int port) {
    return fmt::format(
        "gateway:\n  listen: 127.0.0.1:0\n  admin: 127.0.0.1:0\n  local:\n"
        "    - {{name: {}, url: \"http://127.0.0.1:{}\"}}\n",
        name, port);
  }
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
  start_gateway(config(local, cloud) + "  sensitive_queue_timeout_ms: 200\n");
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
  start_gateway(local_only("only", local));
  upstreams_.front()->stop();
  auto r = send("/x");
  EXPECT_EQ(r.status, 503);
  EXPECT_THAT(r.body, HasSubstr("local endpoints are down (last: local endpoint 'only' refused "
                                "the connection"));
  EXPECT_THAT(r.body, HasSubstr("and no cloud endpoint is configured"));
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
  EXPECT_THAT(refused.body,
              HasSubstr("the daily cloud budget of $0.015 is spent ($0.02 today): overflow "
                        "to the cloud is off until 00:00 UTC, and every local "
                        "endpoint is at capacity"));
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
  EXPECT_THAT(big.body, HasSubstr("request body over the limit of 65536 bytes"));
  auto headers = send("/x", "", {{"X-Big", std::string(10 * 1024, 'h')}});
  EXPECT_EQ(headers.status, 431);
  EXPECT_EQ(lines(path("local.rec")), 0);
  EXPECT_EQ(lines(path("cloud.rec")), 0);
}

TEST_F(GatewayTest, SseStreamsThroughBeforeTheUpstreamFinishes) {
  std::string hold = path("hold-stream");
  std::ofstream(hold).close();
  int local = upstream("local", "", {"--sse", "--hold-after-first", hold});
  int cloud = upstream("cloud");
  start_gateway(config(local, cloud));
  RawClient c(port_);
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.send(post("/v1/chat/completions", R"({"model":"m","stream":true})")));
  // The first chunk arrives while the upstream still holds the rest of the stream.
  ASSERT_TRUE(c.read_until("\"content\": \"Hel\"")) << c.received();
  EXPECT_TRUE(std::filesystem::exists(hold));
  EXPECT_THAT(c.received(), HasSubstr("text/event-stream"));
  EXPECT_THAT(c.received(), HasSubstr("X-Hylab-Route: local; endpoint=gpu-box"));
  EXPECT_THAT(c.received(), ::testing::Not(HasSubstr("[DONE]")));
  std::filesystem::remove(hold);
  ASSERT_TRUE(c.read_until("\r\n0\r\n\r\n")) << c.received();
  EXPECT_THAT(c.received(), HasSubstr("data: [DONE]"));
  // Usage from the last chunk of the stream is counted.
  ASSERT_TRUE(wait_until([&] {
    return metric(
               metrics(),
               "hylab_gateway_output_tokens_total{environment=\"local\",endpoint=\"gpu-box\"}") ==
           3;
  })) << metrics();
  EXPECT_EQ(metric(metrics(),
                   "hylab_gateway_input_tokens_total{environment=\"local\",endpoint=\"gpu-box\"}"),
            7);
  // The connection carries on for the next request.
  c.clear();
  ASSERT_TRUE(c.send(post("/v1/embeddings", R"({"input":"x"})")));
  EXPECT_TRUE(c.read_until("\"upstream\": \"local\"")) << c.received();
}

TEST_F(GatewayTest, FirstTokenTimeoutFailsOverBeforeAnyByte) {
  int local = upstream("local", "", {"--sse", "--first-token-delay-ms", "5000"});
  int cloud = upstream("cloud", "", {"--sse"});
  start_gateway(config(local, cloud, 4, "connect: 1s, response: 10s, first_token: 300ms"));
  auto t0 = std::chrono::steady_clock::now();
  auto r = send("/v1/chat/completions", R"({"model":"m","stream":true})");
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.headers["x-hylab-route"], "cloud; endpoint=cloud-a; reason=failover");
  EXPECT_THAT(r.body, HasSubstr("\"upstream\": \"cloud\""));
  EXPECT_THAT(r.body, ::testing::Not(HasSubstr("\"upstream\": \"local\"")));
  EXPECT_LT(took, 3.0);
  EXPECT_EQ(metric(metrics(), "hylab_gateway_first_token_timeouts_total"), 1);
}

TEST_F(GatewayTest, AStreamCutAfterTheFirstByteIsNotRetried) {
  int local = upstream("local", "", {"--sse", "--die-after-first"});
  int cloud = upstream("cloud", "", {"--sse"});
  start_gateway(config(local, cloud));
  RawClient c(port_);
  ASSERT_TRUE(c.send(post("/v1/chat/completions", R"({"model":"m","stream":true})")));
  ASSERT_TRUE(c.read_until("\"content\": \"Hel\"")) << c.received();
  // The upstream died mid-stream: the client sees the stream end without its last chunk,
  // and nothing went to the cloud (a second answer would be spliced into the first).
  EXPECT_TRUE(c.read_until_closed());
  EXPECT_THAT(c.received(), ::testing::Not(HasSubstr("[DONE]")));
  EXPECT_THAT(c.received(), ::testing::Not(HasSubstr("\r\n0\r\n\r\n")));
  EXPECT_EQ(lines(path("cloud.rec")), 0);
  EXPECT_EQ(metric(metrics(), "hylab_gateway_broken_streams_total"), 1);
}

TEST_F(GatewayTest, A503WithRetryAfterIsBusyNotDead) {
  int local = upstream("local", "", {"--status", "503", "--retry-after", "30"});
  int cloud = upstream("cloud");
  start_gateway(config(local, cloud, 4));
  for (int i = 0; i < 3; ++i) {
    auto r = send("/v1/chat/completions", R"({"model":"m"})");
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.headers["x-hylab-route"], "cloud; endpoint=cloud-a; reason=overflow");
  }
  // Asked once, then skipped while busy; never ejected or counted as failed.
  EXPECT_EQ(lines(path("local.rec")), 1);
  std::string m = metrics();
  EXPECT_EQ(metric(m, "hylab_gateway_endpoint_up{environment=\"local\",endpoint=\"gpu-box\"}"), 1);
  EXPECT_EQ(metric(m, "hylab_gateway_endpoint_busy{environment=\"local\",endpoint=\"gpu-box\"}"),
            1);
  EXPECT_EQ(
      metric(m,
             "hylab_gateway_upstream_failures_total{environment=\"local\",endpoint=\"gpu-box\"}"),
      0);
  EXPECT_EQ(metric(m, "hylab_gateway_busy_total"), 1);
  EXPECT_EQ(metric(m, "hylab_gateway_overflow_total"), 3);
}

TEST_F(GatewayTest, ActiveHealthChecksTakeAnEndpointOutAndBack) {
  std::string healthy = path("healthy");
  std::ofstream(healthy).close();
  int local = upstream("local", "", {"--health-file", healthy});
  int cloud = upstream("cloud");
  start_gateway(config(local, cloud, 4) +
                "  health: {path: /health, interval: 100ms, timeout: 1s, unhealthy_threshold: 2, "
                "healthy_threshold: 2}\n");
  std::string up_key = "hylab_gateway_endpoint_up{environment=\"local\",endpoint=\"gpu-box\"}";
  EXPECT_THAT(send("/a").headers["x-hylab-route"], HasSubstr("local"));
  std::filesystem::remove(healthy);
  ASSERT_TRUE(wait_until([&] { return metric(metrics(), up_key) == 0; })) << metrics();
  for (int i = 0; i < 5; ++i) {
    auto r = send("/b");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.headers["x-hylab-route"], "cloud; endpoint=cloud-a; reason=failover");
  }
  EXPECT_EQ(lines(path("local.rec")), 1);  // taken out before any request failed
  std::ofstream(healthy).close();
  ASSERT_TRUE(wait_until([&] { return metric(metrics(), up_key) == 1; })) << metrics();
  EXPECT_THAT(send("/c").headers["x-hylab-route"], HasSubstr("local"));
}

TEST_F(GatewayTest, ALocalUpstreamKilledUnderLoadFailsNoRequest) {
  int a = upstream("a", "", {"--latency-ms", "5"});
  int b = upstream("b", "", {"--latency-ms", "5"});
  start_gateway(fmt::format(R"(gateway:
  listen: 127.0.0.1:0
  admin: 127.0.0.1:0
  threads: 2
  local:
    - {{name: a, url: "http://127.0.0.1:{}", max_inflight: 4}}
    - {{name: b, url: "http://127.0.0.1:{}", max_inflight: 4}}
  queue_timeout_ms: 10000
  retries: {{budget_percent: 50, min_concurrent: 8}}
)",
                            a, b));
  std::atomic<int> done{0};
  std::atomic<int> failed{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 6; ++t) {
    clients.emplace_back([&] {
      for (int i = 0; i < 40; ++i) {
        auto r = send("/v1/chat/completions", R"({"model":"m"})");
        if (r.status != 200) {
          ++failed;
          ADD_FAILURE() << r.status << " " << r.body;
        }
        ++done;
      }
    });
  }
  ASSERT_TRUE(wait_until([&] { return done >= 40; }));
  upstreams_.front()->stop();  // `a` dies with requests in flight
  for (auto& c : clients) c.join();
  EXPECT_EQ(done, 240);
  EXPECT_EQ(failed, 0) << metrics();
  EXPECT_GT(lines(path("b.rec")), 120);
}

TEST_F(GatewayTest, ReloadUnderLoadDropsNothing) {
  int a = upstream("a");
  int b = upstream("b");
  auto cfg_for = [&](int port) {
    return fmt::format(R"(gateway:
  listen: 127.0.0.1:0
  admin: 127.0.0.1:0
  threads: 2
  local:
    - {{name: gpu, url: "http://127.0.0.1:{}", max_inflight: 16}}
)",
                       port);
  };
  start_gateway(cfg_for(a));
  RawClient kept(port_);  // a keep-alive connection open across the reload
  ASSERT_TRUE(kept.send(post("/v1/embeddings", "{}")));
  ASSERT_TRUE(kept.read_until("\"upstream\": \"a\"")) << kept.received();
  std::atomic<bool> stop{false};
  std::atomic<int> failed{0};
  std::atomic<int> seen_b{0};
  std::vector<std::thread> load;
  for (int t = 0; t < 4; ++t) {
    load.emplace_back([&] {
      while (!stop) {
        auto r = send("/v1/chat/completions", R"({"model":"m"})");
        if (r.status != 200) ++failed;
        if (r.body.find("\"upstream\": \"b\"") != std::string::npos) ++seen_b;
      }
    });
  }
  ASSERT_TRUE(wait_until([&] { return lines(path("a.rec")) > 20; }));
  std::ofstream(path("hylab.yaml")) << cfg_for(b);
  ::kill(gateway_.pid(), SIGHUP);
  ASSERT_TRUE(wait_until([&] { return seen_b > 20; })) << slurp(path("gateway.log"));
  // A bad file is refused with its line, and the running configuration stays.
  std::ofstream(path("hylab.yaml")) << cfg_for(b) << "  colud: []\n";
  ::kill(gateway_.pid(), SIGHUP);
  ASSERT_TRUE(
      wait_until([&] { return metric(metrics(), "hylab_gateway_reload_failures_total") == 1; }));
  int before = seen_b;
  ASSERT_TRUE(wait_until([&] { return seen_b > before + 20; }));
  stop = true;
  for (auto& t : load) t.join();
  EXPECT_EQ(failed, 0);
  std::string log = slurp(path("gateway.log"));
  EXPECT_THAT(log, HasSubstr("reloaded"));
  EXPECT_THAT(log, HasSubstr("reload refused"));
  EXPECT_THAT(log, HasSubstr("hylab.yaml:7:3: error: gateway.colud"));
  EXPECT_EQ(metric(metrics(), "hylab_gateway_reloads_total"), 1);
  // The connection opened before the reload still works, now routed to b.
  kept.clear();
  ASSERT_TRUE(kept.send(post("/v1/embeddings", "{}")));
  EXPECT_TRUE(kept.read_until("\"upstream\": \"b\"")) << kept.received();
}

TEST_F(GatewayTest, SlowClientsAreCutOffAndOthersCarryOn) {
  int local = upstream("local");
  int cloud = upstream("cloud");
  start_gateway(config(local, cloud, 4, "connect: 1s, response: 10s, client: 1s"));
  RawClient headers_trickle(port_);
  ASSERT_TRUE(headers_trickle.send("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"));
  RawClient body_trickle(port_);
  ASSERT_TRUE(body_trickle.send(
      "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"mod"));
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(send("/v1/models").status, 200);  // others are served meanwhile
  EXPECT_TRUE(headers_trickle.read_until_closed(10));
  EXPECT_TRUE(body_trickle.read_until_closed(10));
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_GE(took, 0.8);
  EXPECT_LT(took, 5);
  EXPECT_EQ(lines(path("local.rec")), 1);  // the trickled requests never went upstream
}

TEST_F(GatewayTest, HttpsCloudEndpointsVerifyTheCertificate) {
  std::string cert = path("cert.pem");
  std::string key = path("key.pem");
  std::string cmd = fmt::format(
      "openssl req -x509 -newkey rsa:2048 -nodes -keyout {} -out {} -days 1 -subj /CN=127.0.0.1 "
      "-addext subjectAltName=IP:127.0.0.1 > {} 2>&1",
      key, cert, path("openssl.log"));
  ASSERT_EQ(std::system(cmd.c_str()), 0) << slurp(path("openssl.log"));
  int cloud = upstream("cloud", "", {"--tls-cert", cert, "--tls-key", key});
  auto cfg_with = [&](const std::string& ca) {
    return fmt::format(R"(gateway:
  listen: 127.0.0.1:0
  admin: 127.0.0.1:0
  threads: 1
  cloud:
    - {{name: cloud-a, url: "https://127.0.0.1:{}/", api_key_env: HYLAB_TEST_CLOUD_KEY{}}}
)",
                       cloud, ca);
  };
  start_gateway(cfg_with(fmt::format(", ca_file: \"{}\"", cert)));
  auto r = send("/v1/chat/completions", R"({"model":"m"})");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_THAT(r.body, HasSubstr("\"upstream\": \"cloud\""));
  EXPECT_THAT(slurp(path("cloud.rec")),
              HasSubstr("\"authorization\": \"Bearer cloud-secret-123\""));
  // Without the CA the certificate does not verify: nothing is sent.
  gateway_.stop();
  std::filesystem::remove(path("gw.json"));
  start_gateway(cfg_with(""));
  auto refused = send("/v1/chat/completions", R"({"model":"m"})");
  EXPECT_EQ(refused.status, 503);
  EXPECT_THAT(refused.body, HasSubstr("failed the TLS handshake"));
  EXPECT_THAT(refused.body, HasSubstr("certificate verify failed"));
  EXPECT_EQ(lines(path("cloud.rec")), 1);
}

TEST_F(GatewayTest, AdaptiveLimitOverflowsWhenLocalLatencyDegrades) {
  // Latency grows with load: 10 ms + 10 ms per request in flight.
  int local = upstream("local", "", {"--latency-ms", "10", "--per-inflight-ms", "10"});
  int cloud = upstream("cloud");
  start_gateway(fmt::format(R"(gateway:
  listen: 127.0.0.1:0
  admin: 127.0.0.1:0
  threads: 2
  local:
    - {{name: gpu-box, url: "http://127.0.0.1:{}", max_inflight: 32}}
  cloud:
    - {{name: cloud-a, url: "http://127.0.0.1:{}", max_inflight: 100}}
  adaptive: {{window: 100ms, tolerance: 1.5, smoothing: 0.5, min_limit: 2}}
)",
                            local, cloud));
  for (int i = 0; i < 10; ++i) send("/v1/embeddings", "{}");  // the unloaded baseline
  std::vector<std::thread> clients;
  for (int t = 0; t < 16; ++t) {
    clients.emplace_back([&] {
      for (int i = 0; i < 15; ++i) EXPECT_EQ(send("/v1/embeddings", "{}").status, 200);
    });
  }
  for (auto& c : clients) c.join();
  // 16 at once fit the static 32 slots, yet local latency degraded: the learned limit
  // fell and the rest overflowed to the cloud.
  std::string m = metrics();
  EXPECT_LT(metric(m, "hylab_gateway_capacity{environment=\"local\",endpoint=\"gpu-box\"}"), 32)
      << m;
  EXPECT_GT(metric(m, "hylab_gateway_overflow_total"), 20) << m;
}

TEST_F(GatewayTest, NginxAsAPlainUpstream) {
  // nginx serves files; the gateway proxies other paths as plain HTTP, bodies streamed.
  std::string root = path("www");
  std::filesystem::create_directories(root);
  std::string big(3 << 20, 'x');
  for (std::size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<char>('a' + i % 26);
  std::ofstream(root + "/big.bin") << big;
  std::ofstream(root + "/small.txt") << "hello from nginx\n";
  int port = free_loopback_port();
  ASSERT_GT(port, 0);
  std::string d = dir_.string();
  std::ofstream(path("nginx.conf")) << fmt::format(
      "daemon off; worker_processes 1; pid {0}/nginx.pid; error_log {0}/nginx.err;\n"
      "events {{ worker_connections 256; }}\n"
      "http {{ access_log off; client_body_temp_path {0}; proxy_temp_path {0}; "
      "fastcgi_temp_path {0}; uwsgi_temp_path {0}; scgi_temp_path {0};\n"
      "  server {{ listen 127.0.0.1:{1}; root {2}; }} }}\n",
      d, port, root);
  auto nginx = std::make_unique<Process>();
  nginx->start({"nginx", "-c", path("nginx.conf"), "-p", d}, path("nginx.log"));
  upstreams_.push_back(std::move(nginx));
  ASSERT_TRUE(wait_until([&] {
    HttpClientRequest r;
    r.url = fmt::format("http://127.0.0.1:{}/small.txt", port);
    auto resp = http_request(r);
    return resp && resp->status == 200;
  })) << slurp(path("nginx.err"));
  start_gateway(local_only("nginx", port));
  auto small = send("/small.txt");
  EXPECT_EQ(small.status, 200);
  EXPECT_EQ(small.body, "hello from nginx\n");
  EXPECT_EQ(small.headers["x-hylab-route"], "local; endpoint=nginx; reason=local-first");
  auto large = send("/big.bin");
  EXPECT_EQ(large.status, 200);
  EXPECT_EQ(large.body.size(), big.size());
  EXPECT_TRUE(large.body == big);
  EXPECT_EQ(send("/missing").status, 404);  // upstream answers pass through
  RawClient head(port_);
  ASSERT_TRUE(head.send("HEAD /big.bin HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_TRUE(head.read_until("\r\n\r\n"));
  EXPECT_THAT(head.received(), HasSubstr(fmt::format("Content-Length: {}", big.size())));
  head.clear();
  ASSERT_TRUE(head.send("GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n"));  // same connection
  EXPECT_TRUE(head.read_until("hello from nginx")) << head.received();
}

TEST_F(GatewayTest, PrivacyRulesByRouteClientKeyAndContent) {
  std::string hold = path("hold");
  int local = upstream("local", hold);
  int cloud = upstream("cloud");
  start_gateway(config(local, cloud) + R"(  sensitive_queue_timeout_ms: 100
  privacy:
    routes: ["/v1/embeddings", "/internal/*"]
    client_key_envs: [HYLAB_TEST_HOSPITAL_KEY]
    patterns: ["###-##-####"]
)",
                {"HYLAB_TEST_HOSPITAL_KEY=hospital-app-key"});
  std::ofstream(hold).close();
  std::thread held([&] { send("/v1/models"); });
  ASSERT_TRUE(wait_until([&] { return lines(path("local.rec")) == 1; }));
  auto by_route = send("/v1/embeddings", R"({"input":"x"})");
  auto by_glob = send("/internal/report", R"({"q":1})");
  auto by_key = send("/v1/chat/completions", R"({"model":"m"})",
                     {{"Authorization", "Bearer hospital-app-key"}});
  auto by_content = send("/v1/chat/completions", R"({"model":"m","prompt":"SSN 123-45-6789"})");
  for (const auto* r : {&by_route, &by_glob, &by_key, &by_content}) {
    EXPECT_EQ(r->status, 503) << r->body;
    EXPECT_THAT(r->body, HasSubstr("sensitive request: it never leaves the lab"));
  }
  auto plain = send("/v1/chat/completions", R"({"model":"m","prompt":"SSN unknown"})",
                    {{"Authorization", "Bearer another-key"}});
  EXPECT_EQ(plain.status, 200);
  EXPECT_EQ(plain.headers["x-hylab-route"], "cloud; endpoint=cloud-a; reason=overflow");
  std::filesystem::remove(hold);
  held.join();
  EXPECT_EQ(lines(path("cloud.rec")), 1);
  EXPECT_THAT(slurp(path("cloud.rec")), ::testing::Not(HasSubstr("123-45-6789")));
  std::string m = metrics();
  EXPECT_EQ(metric(m, "hylab_gateway_sensitive_refused_total"), 4);
  EXPECT_EQ(metric(m, "hylab_gateway_sensitive_to_cloud_total"), 0);
  EXPECT_THAT(slurp(path("gateway.log")), ::testing::Not(HasSubstr("hospital-app-key")));
}

TEST_F(GatewayTest, ModelsGoToThePoolThatServesThem) {
  int local = upstream("local");
  int cloud = upstream("cloud");
  start_gateway(fmt::format(R"(gateway:
  listen: 127.0.0.1:0
  admin: 127.0.0.1:0
  local:
    - {{name: gpu-box, url: "http://127.0.0.1:{}", models: [llama3.1-8b]}}
  cloud:
    - {{name: cloud-a, url: "http://127.0.0.1:{}", models: [gpt-4o, gpt-4o-mini]}}
  models: {{llama3.1-8b: gpt-4o-mini}}
)",
                            local, cloud));
  auto home = send("/v1/chat/completions", R"({"model":"llama3.1-8b"})");
  EXPECT_EQ(home.headers["x-hylab-route"], "local; endpoint=gpu-box; reason=local-first");
  auto big = send("/v1/chat/completions", R"({"model":"gpt-4o"})");
  EXPECT_EQ(big.status, 200);
  EXPECT_EQ(big.headers["x-hylab-route"], "cloud; endpoint=cloud-a; reason=model");
  EXPECT_THAT(big.body, HasSubstr("\"model\": \"gpt-4o\""));
  EXPECT_EQ(lines(path("local.rec")), 1);  // the local box never saw the cloud model
  auto secret =
      send("/v1/chat/completions", R"({"model":"gpt-4o"})", {{"X-Hylab-Data", "sensitive"}});
  EXPECT_EQ(secret.status, 503);
  EXPECT_THAT(secret.body, HasSubstr("no local endpoint serves model 'gpt-4o'"));
  auto unknown = send("/v1/chat/completions", R"({"model":"mystery"})");
  EXPECT_EQ(unknown.status, 503);
  EXPECT_THAT(unknown.body, HasSubstr("no local endpoint serves model 'mystery'"));
  EXPECT_EQ(lines(path("cloud.rec")), 1);
  EXPECT_EQ(metric(metrics(), "hylab_gateway_model_routed_total"), 1);
}

TEST_F(GatewayTest, SigtermLetsRequestsInFlightFinish) {
  std::string hold = path("hold");
  int local = upstream("local", hold);
  int cloud = upstream("cloud");
  start_gateway(config(local, cloud, 4, "connect: 1s, response: 10s, drain: 10s"));
  std::ofstream(hold).close();
  HttpClientResponse held_response;
  std::thread held([&] { held_response = send("/v1/chat/completions", R"({"model":"m"})"); });
  ASSERT_TRUE(wait_until([&] { return lines(path("local.rec")) == 1; }));
  ::kill(gateway_.pid(), SIGTERM);
  ASSERT_TRUE(
      wait_until([&] { return slurp(path("gateway.log")).find("stopping") != std::string::npos; }));
  // No new connections, while the request in flight still gets its answer.
  EXPECT_TRUE(wait_until([&] { return !RawClient(port_).connected(); }));
  std::filesystem::remove(hold);
  held.join();
  EXPECT_EQ(held_response.status, 200);
  EXPECT_EQ(held_response.headers["connection"], "close");
  EXPECT_EQ(gateway_.wait(), 0);
  EXPECT_THAT(slurp(path("gateway.log")), HasSubstr("1 request(s) in flight"));
  EXPECT_THAT(slurp(path("gateway.log")), HasSubstr("hylab gateway: stopped"));
}

TEST_F(GatewayTest, NothingProcessedIsSentTwiceAndRetriesHaveABudget) {
  std::string hold = path("hold");
  std::ofstream(hold).close();
  int local = upstream("local", hold);
  int cloud = upstream("cloud");
  start_gateway(config(local, cloud, 4, "connect: 1s, response: 1s") +
                "  retries: {budget_percent: 0, min_concurrent: 0}\n");
  // An inference request may move before its first byte, but not past the retry budget.
  auto chat = send("/v1/chat/completions", R"({"model":"m"})");
  EXPECT_EQ(chat.status, 504) << chat.body;
  EXPECT_THAT(chat.body, HasSubstr("did not answer within 1 s; not retried: the retry budget "
                                   "is spent"));
  // The timeout ejected the endpoint for 1 s; once it is back, a POST on a plain path that
  // the upstream received and did not answer in time may have been processed, so it is not
  // sent anywhere else.
  ASSERT_TRUE(wait_until([&] {
    return metric(metrics(),
                  "hylab_gateway_endpoint_up{environment=\"local\",endpoint=\"gpu-box\"}") == 1;
  }));
  auto plain = send("/jobs/submit", R"({"x":1})");
  EXPECT_EQ(plain.status, 504) << plain.body;
  EXPECT_THAT(plain.body, HasSubstr("did not answer within 1 s; not retried: it may have "
                                    "processed the request, and the method is not idempotent"));
  EXPECT_EQ(plain.headers["x-hylab-route"], "local; endpoint=gpu-box; reason=error");
  EXPECT_EQ(lines(path("local.rec")), 2);
  std::filesystem::remove(hold);
  EXPECT_EQ(lines(path("cloud.rec")), 0);
  std::string m = metrics();
  EXPECT_EQ(metric(m, "hylab_gateway_retry_budget_exhausted_total"), 1);
  EXPECT_EQ(metric(m, "hylab_gateway_retries_total"), 0);
}

// Issue 18, 8b: with every slot on both sides taken, requests wait for the first slot that
// frees (here up to the connect timeout, 3 s), where they were refused at once before.
TEST_F(GatewayTest, WhenEverySlotIsTakenRequestsQueueForTheFirstToFree) {
  int local = upstream("local", "", {"--latency-ms", "200"});
  int cloud = upstream("cloud", "", {"--latency-ms", "200"});
  start_gateway(slots_config(local, cloud, ", max_inflight: 2", "connect: 3s"));
  auto status = concurrent_chats(12);
  for (std::size_t i = 0; i < status.size(); ++i) EXPECT_EQ(status[i], 200) << i;
  EXPECT_GE(metric(metrics(), "hylab_gateway_queued_total"), 1);
  EXPECT_EQ(lines(path("local.rec")) + lines(path("cloud.rec")), 12);
}

// Issue 18, 8c: a cloud endpoint without max_inflight takes 256 at once (it was 8, and 12
// concurrent requests against 2 local slots got two 503s).
TEST_F(GatewayTest, ACloudEndpointWithoutMaxInflightTakesTheOverflow) {
  int local = upstream("local", "", {"--latency-ms", "300"});
  int cloud = upstream("cloud", "", {"--latency-ms", "300"});
  start_gateway(slots_config(local, cloud, "", "connect: 50ms"));
  auto status = concurrent_chats(12);
  for (std::size_t i = 0; i < status.size(); ++i) EXPECT_EQ(status[i], 200) << i;
  EXPECT_EQ(metric(metrics(), "hylab_gateway_capacity{environment=\"cloud\",endpoint=\"cloud-a\"}"),
            256);
}

TEST_F(GatewayTest, PastTheConnectionCapIdleClientsMakeRoom) {
  int local = upstream("local");
  int cloud = upstream("cloud");
  std::string cfg = config(local, cloud, 4);
  cfg.replace(cfg.find("max_header: 8KiB}"), 17, "max_header: 8KiB, max_connections: 4}");
  start_gateway(cfg);
  std::vector<std::unique_ptr<RawClient>> idle;
  for (int i = 0; i < 30; ++i) {
    idle.push_back(std::make_unique<RawClient>(port_));
    ASSERT_TRUE(idle.back()->connected());
  }
  // Each of the two threads keeps at most 2; the oldest idle ones were closed.
  ASSERT_TRUE(wait_until([&] {
    return metric(metrics(), "hylab_gateway_connections_evicted_total") >= 26;
  })) << metrics();
  EXPECT_LE(metric(metrics(), "hylab_gateway_connections"), 4);
  // A client with a request is served, and so is the newest idle connection.
  EXPECT_EQ(send("/v1/embeddings", R"({"input":"x"})").status, 200);
  ASSERT_TRUE(idle.back()->send(post("/v1/embeddings", R"({"input":"y"})")));
  EXPECT_TRUE(idle.back()->read_until("\"upstream\": \"local\"")) << idle.back()->received();
}

}  // namespace
}  // namespace hylab::testing
