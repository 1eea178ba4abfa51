// The control plane end to end: the real `hylab serve`, real job processes.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include "exec/local/process.h"
#include "serve_harness.h"

namespace hylab::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// A job that waits until the test creates `file`.
std::string waiting_job(const std::string& name, const std::string& gpus, const std::string& file,
                        const std::string& extra_run = "") {
  return "name: " + name + "\ncategory: development\n" +
         (gpus.empty() ? "" : "resources: {accelerators: " + gpus + "}\n") +
         "run: |\n  echo started " + name + "\n" + extra_run + "  while [ ! -e " + file +
         " ]; do sleep 0.02; done\n  echo done " + name + "\n";
}

void touch(const std::string& path) { std::ofstream(path) << "go\n"; }

TEST(ServeLifecycle, JobRunsWithItsEnvironmentAndSucceeds) {
  ServeHarness s;
  s.start();
  std::int64_t id = s.submit(R"(name: env-check
category: development
resources: {accelerators: RTX4090:1}
envs: {GREETING: hello, EMPTY: null}
setup: echo setup-ran > $HYLAB_OUTPUT_DIR/setup.txt
run: |
  cat $HYLAB_OUTPUT_DIR/setup.txt
  echo "$GREETING job=$HYLAB_JOB_ID gpus=$CUDA_VISIBLE_DEVICES"
  echo cwd=$(pwd)
  echo err-line >&2
)");
  ASSERT_GT(id, 0);
  ASSERT_TRUE(s.wait_state(id, "succeeded"));
  auto j = s.job(id);
  EXPECT_EQ(j.at("exit_code").as_int64(), 0);
  EXPECT_TRUE(j.at("signal").is_null());
  EXPECT_EQ(j.at("environment").as_string(), "local");
  EXPECT_EQ(j.at("rule").as_string(), "development");
  EXPECT_TRUE(j.at("started_at").is_string());
  EXPECT_TRUE(j.at("ended_at").is_string());
  EXPECT_EQ(j.at("gpus").as_array().size(), 1u);
  EXPECT_EQ(j.at("decision").at("rule").as_string(), "development");
  std::string log = s.log(id);
  EXPECT_THAT(log, HasSubstr("setup-ran"));
  EXPECT_THAT(log, HasSubstr("hello job=" + std::to_string(id) + " gpus=0"));
  EXPECT_THAT(log, HasSubstr("cwd=" + s.state_dir() + "/jobs/" + std::to_string(id)));
  EXPECT_THAT(log, HasSubstr("err-line"));
  // The inventory is free again.
  EXPECT_EQ(s.get_json("/v1/inventory").at("free").as_int64(), 2);
}

TEST(ServeLifecycle, FailingRunAndFailingSetupAreRecorded) {
  ServeHarness s;
  s.start();
  std::int64_t fail = s.submit("category: development\nrun: exit 3\n");
  std::int64_t bad_setup =
      s.submit("category: development\nsetup: 'false'\nrun: echo should-not-run\n");
  ASSERT_TRUE(s.wait_state(fail, "failed"));
  ASSERT_TRUE(s.wait_state(bad_setup, "failed"));
  EXPECT_EQ(s.job(fail).at("exit_code").as_int64(), 3);
  EXPECT_EQ(s.job(fail).at("reason").as_string(), "exited with code 3");
  EXPECT_EQ(s.job(bad_setup).at("exit_code").as_int64(), 1);
  EXPECT_THAT(s.log(bad_setup), ::testing::Not(HasSubstr("should-not-run")));
}

TEST(ServeQueue, WaitsForGpusThenRunsByPriorityThenFifo) {
  ServeHarness s;
  s.start();
  std::string release = s.path("release");
  std::int64_t big = s.submit(waiting_job("big", "RTX4090:2", release));
  ASSERT_TRUE(s.wait_state(big, "running"));
  std::int64_t low = s.submit(waiting_job("low", "RTX4090:2", s.path("release-low")));
  std::int64_t high = s.submit(waiting_job("high", "RTX4090:2", s.path("release-high")), 10);
  EXPECT_EQ(s.state(low), "queued");
  EXPECT_EQ(s.state(high), "queued");
  EXPECT_EQ(s.get_json("/v1/inventory").at("used").as_int64(), 2);
  touch(release);
  ASSERT_TRUE(s.wait_state(high, "running"));
  EXPECT_EQ(s.state(low), "queued");  // lower priority waits although it came first
  touch(s.path("release-high"));
  ASSERT_TRUE(s.wait_state(low, "running"));
  touch(s.path("release-low"));
  ASSERT_TRUE(s.wait_state(low, "succeeded"));
  auto started = [&](std::int64_t id) {
    return std::string(s.job(id).at("started_at").as_string());
  };
  EXPECT_LT(started(high), started(low));
}

TEST(ServeCancel, JobIgnoringSigtermIsKilledAfterTheGracePeriod) {
  ServeHarness s;
  s.start();
  std::int64_t id = s.submit(
      waiting_job("stubborn", "RTX4090:1", s.path("never"), "  trap 'echo got-term' TERM\n"));
  ASSERT_TRUE(wait_until([&] { return s.log(id).find("started stubborn") != std::string::npos; }));
  auto t0 = std::chrono::steady_clock::now();
  auto r = s.request("POST", "/v1/jobs/" + std::to_string(id) + "/cancel");
  EXPECT_EQ(r.status, 202) << r.body;
  ASSERT_TRUE(s.wait_state(id, "cancelled"));
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_GE(took, 0.9);  // the configured grace of 1 s passed before SIGKILL
  auto j = s.job(id);
  EXPECT_EQ(j.at("signal").as_int64(), SIGKILL);
  EXPECT_THAT(s.log(id), HasSubstr("got-term"));
  EXPECT_EQ(s.get_json("/v1/inventory").at("free").as_int64(), 2);
  // Cancelling it again is a conflict, with the reason.
  auto again = s.request("POST", "/v1/jobs/" + std::to_string(id) + "/cancel");
  EXPECT_EQ(again.status, 409);
  EXPECT_THAT(again.body, HasSubstr("has already ended (cancelled)"));
}

TEST(ServeCancel, QueuedJobIsCancelledAtOnce) {
  ServeHarness s;
  s.start();
  std::int64_t hog = s.submit(waiting_job("hog", "RTX4090:2", s.path("release")));
  ASSERT_TRUE(s.wait_state(hog, "running"));
  std::int64_t queued = s.submit(waiting_job("queued", "RTX4090:1", s.path("release")));
  auto r = s.request("POST", "/v1/jobs/" + std::to_string(queued) + "/cancel");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(s.state(queued), "cancelled");
  touch(s.path("release"));
  ASSERT_TRUE(s.wait_state(hog, "succeeded"));
  EXPECT_EQ(s.state(queued), "cancelled");
}

TEST(ServeLogs, FollowStreamsWhileTheJobRuns) {
  ServeHarness s;
  s.start();
  std::string release = s.path("release");
  std::int64_t id = s.submit(waiting_job("chatty", "", release));
  HttpClientRequest req;
  req.url = s.url() + "/v1/jobs/" + std::to_string(id) + "/logs?follow=1";
  req.headers.emplace_back("Authorization", "Bearer " + s.token());
  std::string got;
  bool released = false;
  auto r = http_stream(req, [&](std::string_view data) {
    got += data;
    // The first line arrived while the job still runs: only now let it finish.
    if (!released && got.find("started chatty") != std::string::npos) {
      EXPECT_EQ(s.state(id), "running");
      touch(release);
      released = true;
    }
    return true;
  });
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(released);
  EXPECT_THAT(got, HasSubstr("done chatty"));
  EXPECT_EQ(s.state(id), "succeeded");
}

TEST(ServeLogs, LogIsCappedAndTheJobKeepsRunning) {
  ServeHarness s("  log_max_size: 4KiB\n");
  s.start();
  std::int64_t id = s.submit(
      "category: development\nrun: |\n  for i in $(seq 1 2000); do echo "
      "line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; done\n"
      "  echo finished > $HYLAB_OUTPUT_DIR/done\n");
  ASSERT_TRUE(s.wait_state(id, "succeeded"));
  std::string log = s.log(id);
  EXPECT_THAT(log, HasSubstr("line-1-"));
  EXPECT_THAT(log, ::testing::Not(HasSubstr("line-2000-")));
  EXPECT_THAT(log, HasSubstr("[hylab: log truncated at 4096 bytes; the job keeps running]"));
  EXPECT_LE(log.size(), 4096u + 100u);
  // The job was not blocked by the cap: it ran to its last command.
  EXPECT_TRUE(
      std::filesystem::exists(s.state_dir() + "/jobs/" + std::to_string(id) + "/outputs/done"));
}

TEST(ServeLogs, FollowingAQueuedJobShowsItsOutputOnceItRuns) {
  ServeHarness s;
  s.start();
  std::int64_t hog = s.submit(waiting_job("hog", "RTX4090:2", s.path("release")));
  ASSERT_TRUE(s.wait_state(hog, "running"));
  std::int64_t id = s.submit(
      "category: development\nresources: {accelerators: RTX4090:1}\nrun: echo gpu-job "
      "gpus=[$CUDA_VISIBLE_DEVICES]\n");
  ASSERT_EQ(s.state(id), "queued");
  std::string route = "route=\"/v1/jobs/{id}/logs\"";
  std::thread releaser([&] {
    // Release the hog only once the follow request is being served.
    wait_until([&] { return s.request("GET", "/metrics").body.find(route) != std::string::npos; });
    touch(s.path("release"));
  });
  HttpClientRequest req;
  req.url = s.url() + "/v1/jobs/" + std::to_string(id) + "/logs?follow=1";
  req.headers.emplace_back("Authorization", "Bearer " + s.token());
  std::string got;
  auto r = http_stream(req, [&](std::string_view d) {
    got += d;
    return true;
  });
  releaser.join();
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_THAT(got, ::testing::ContainsRegex("gpu-job gpus=\\[[01]\\]"));
  EXPECT_EQ(s.state(id), "succeeded");
  // A job without GPUs sees none, not the lab's.
  std::int64_t cpu =
      s.submit("category: development\nrun: echo cpu-job gpus=[$CUDA_VISIBLE_DEVICES]\n");
  ASSERT_TRUE(s.wait_state(cpu, "succeeded"));
  EXPECT_THAT(s.log(cpu), HasSubstr("cpu-job gpus=[]"));
}

TEST(ServeCancel, CancelRightAfterSubmitIsCancelledNotLost) {
  ServeHarness s;
  s.start();
  std::vector<std::int64_t> ids;
  for (int i = 0; i < 5; ++i) {
    std::int64_t id = s.submit(waiting_job("quick", "", s.path("never")));
    auto r = s.request("POST", "/v1/jobs/" + std::to_string(id) + "/cancel");
    EXPECT_TRUE(r.status == 200 || r.status == 202) << r.body;
    ids.push_back(id);
  }
  for (auto id : ids) {
    ASSERT_TRUE(s.wait_state(id, "cancelled")) << s.state(id);
  }
}

TEST(ServeAuth, TokenRequiredEverywhereButHealthz) {
  ServeHarness s;
  s.start();
  EXPECT_EQ(s.request("GET", "/healthz", "", std::string()).status, 200);
  auto none = s.request("GET", "/v1/jobs", "", std::string());
  EXPECT_EQ(none.status, 401);
  EXPECT_THAT(none.body, HasSubstr("missing bearer token"));
  EXPECT_EQ(none.headers.at("www-authenticate"), "Bearer");
  auto wrong = s.request("GET", "/v1/jobs", "", std::string(64, 'a'));
  EXPECT_EQ(wrong.status, 401);
  EXPECT_THAT(wrong.body, HasSubstr("wrong bearer token"));
  EXPECT_THAT(wrong.body, ::testing::Not(HasSubstr(s.token())));
  EXPECT_EQ(s.request("GET", "/metrics", "", std::string()).status, 401);
  // The token file is private.
  struct stat st {};
  ASSERT_EQ(::stat((s.state_dir() + "/token").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(ServeLimits, OversizedAndMalformedRequestsSayWhy) {
  ServeHarness s;
  s.start();
  auto big = s.request("POST", "/v1/jobs", std::string(4 << 20, 'x'));
  EXPECT_EQ(big.status, 413);
  EXPECT_THAT(big.body, HasSubstr("request body over the limit of 65536 bytes"));
  auto bad_yaml = s.request("POST", "/v1/jobs?file=job.yaml", "name: [unclosed\n");
  EXPECT_EQ(bad_yaml.status, 400);
  EXPECT_THAT(bad_yaml.body, HasSubstr("job.yaml:2:1: error: invalid YAML"));
  auto bad_spec = s.request("POST", "/v1/jobs?file=job.yaml", "catgory: training\n");
  EXPECT_EQ(bad_spec.status, 400);
  EXPECT_THAT(bad_spec.body, HasSubstr("unknown key (did you mean 'category'?)"));
  auto bad_id = s.request("GET", "/v1/jobs/abc");
  EXPECT_EQ(bad_id.status, 404);
  auto missing = s.request("GET", "/v1/jobs/999");
  EXPECT_EQ(missing.status, 404);
  EXPECT_THAT(missing.body, HasSubstr("no job with id 999"));
  EXPECT_EQ(s.request("DELETE", "/v1/jobs").status, 405);
  auto cannot = s.request("POST", "/v1/jobs",
                          "resources: {accelerators: H100:8}\ndata: {sensitivity: regulated}\n");
  EXPECT_EQ(cannot.status, 422);
  EXPECT_THAT(cannot.body, HasSubstr("cannot place: regulated data never leaves the lab"));

  // Not HTTP at all: a 400 with the reason, then the connection closes.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port =
      htons(static_cast<std::uint16_t>(std::stoi(s.url().substr(s.url().rfind(':') + 1))));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  std::string junk = "GARBAGE\x01\x02 / HTTP/9\r\n\r\n";
  ASSERT_EQ(::write(fd, junk.data(), junk.size()), static_cast<ssize_t>(junk.size()));
  std::string reply;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) reply.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  EXPECT_THAT(reply, HasSubstr("HTTP/1.1 400"));
  EXPECT_THAT(reply, HasSubstr("malformed HTTP request"));
}

TEST(ServeCrash, KilledServerAdoptsRunningJobsAndMarksVanishedOnesLost) {
  ServeHarness s;
  s.start();
  std::int64_t survivor = s.submit(waiting_job("survivor", "RTX4090:1", s.path("release")));
  std::int64_t victim = s.submit(waiting_job("victim", "RTX4090:1", s.path("never")));
  ASSERT_TRUE(s.wait_state(survivor, "running"));
  ASSERT_TRUE(s.wait_state(victim, "running"));
  ASSERT_TRUE(
      wait_until([&] { return s.log(victim).find("started victim") != std::string::npos; }));
  auto pid_of = [&](std::int64_t id) { return s.job(id).at("pid").as_int64(); };
  std::int64_t survivor_pid = pid_of(survivor);
  std::int64_t victim_pid = pid_of(victim);
  s.stop(SIGKILL);
  // While the server is down, the victim's whole job vanishes: its shim first (so it
  // cannot record the exit), then the job's process group.
  auto shim = json::parse(
      *read_text_file(s.state_dir() + "/jobs/" + std::to_string(victim) + "/shim.json", 4096));
  ::kill(static_cast<pid_t>(victim_pid), SIGKILL);
  ASSERT_TRUE(
      wait_until([&] { return !exec::local::process_start_time(static_cast<pid_t>(victim_pid)); }));
  ::kill(-static_cast<pid_t>(shim.at("pgid").as_int64()), SIGKILL);
  s.start();
  EXPECT_EQ(s.state(survivor), "running");
  EXPECT_EQ(pid_of(survivor), survivor_pid);
  EXPECT_EQ(s.state(victim), "lost");
  EXPECT_THAT(std::string(s.job(victim).at("reason").as_string()),
              HasSubstr("vanished while hylab serve was down"));
  EXPECT_EQ(s.get_json("/v1/inventory").at("used").as_int64(), 1);
  touch(s.path("release"));
  ASSERT_TRUE(s.wait_state(survivor, "succeeded"));
  EXPECT_THAT(s.log(survivor), HasSubstr("done survivor"));
}

TEST(ServeConcurrency, ParallelSubmissionsLoseAndDuplicateNothing) {
  ServeHarness s;
  s.start();
  constexpr int kClients = 8;
  constexpr int kEach = 10;
  std::mutex mu;
  std::set<std::int64_t> ids;
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      for (int i = 0; i < kEach; ++i) {
        std::int64_t id = s.submit(
            fmt::format("name: c{}-{}\ncategory: development\nrun: echo {}-{}\n", c, i, c, i));
        std::lock_guard lock(mu);
        ids.insert(id);
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(kClients * kEach));
  EXPECT_EQ(ids.count(0), 0u);
  // Page through them all, 25 at a time.
  std::set<std::string> names;
  std::string after;
  for (;;) {
    auto page = s.get_json("/v1/jobs?limit=25" + after);
    for (const auto& j : page.at("jobs").as_array())
      names.insert(std::string(j.at("name").as_string()));
    if (page.at("next_after").is_null()) break;
    after = "&after=" + std::to_string(page.at("next_after").as_int64());
  }
  EXPECT_EQ(names.size(), static_cast<std::size_t>(kClients * kEach));
  for (std::int64_t id : ids) EXPECT_TRUE(s.wait_state(id, "succeeded")) << id;
}

// One view: the storage cache's figures (as `hylab data` left them) on the server's /metrics.
TEST(ServeApi, MetricsIncludeTheStorageCache) {
  ServeHarness s("storage:\n  cache_dir: cache\n  sensitive: [private]\n");
  s.start();
  auto metrics = s.request("GET", "/metrics");
  EXPECT_THAT(metrics.body, Not(HasSubstr("hylab_storage_")));  // no cache used yet
  std::filesystem::create_directories(s.path("private"));
  std::ofstream(s.path("private/notes.txt")) << "not for the cloud";
  // Relative paths in the config (cache_dir, sensitive) are relative to the config's folder.
  std::string cmd =
      fmt::format("{} --config {} data put {} file://{} > {} 2>&1", HYLAB_BINARY, s.config(),
                  s.path("private/notes.txt"), s.path("up/notes.txt"), s.path("put.log"));
  EXPECT_NE(std::system(cmd.c_str()), 0);
  metrics = s.request("GET", "/metrics");
  EXPECT_THAT(metrics.body, HasSubstr("hylab_storage_refused_uploads_total 1\n"));
  EXPECT_THAT(metrics.body, HasSubstr("hylab_storage_cache_max_bytes 53687091200\n"));
}

TEST(ServeApi, MetricsInventoryPlaceAndFilters) {
  ServeHarness s;
  s.start();
  std::int64_t id = s.submit("category: development\nrun: 'true'\n");
  ASSERT_TRUE(s.wait_state(id, "succeeded"));
  std::int64_t cloud =
      s.submit("category: training\nresources: {accelerators: H100:8}\nrun: train\n");
  EXPECT_EQ(s.state(cloud), "pending");
  EXPECT_THAT(std::string(s.job(cloud).at("reason").as_string()),
              HasSubstr("no cloud target is configured"));
  auto metrics = s.request("GET", "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_THAT(metrics.headers.at("content-type"), HasSubstr("text/plain; version=0.0.4"));
  EXPECT_THAT(metrics.body, HasSubstr("hylab_jobs{environment=\"local\",state=\"succeeded\"} 1"));
  EXPECT_THAT(metrics.body, HasSubstr("hylab_jobs{environment=\"cloud\",state=\"pending\"} 1"));
  EXPECT_THAT(metrics.body, HasSubstr("hylab_gpus{source=\"config\",status=\"free\"} 2"));
  EXPECT_THAT(metrics.body,
              HasSubstr("hylab_http_requests_total{code=\"201\",route=\"/v1/jobs\"} 2"));
  auto inv = s.get_json("/v1/inventory");
  EXPECT_EQ(inv.at("source").as_string(), "config");
  EXPECT_EQ(inv.at("gpus").as_array().at(0).at("model").as_string(), "RTX4090");
  auto placed = s.request("POST", "/v1/place", "category: development\n");
  EXPECT_EQ(placed.status, 200);
  EXPECT_EQ(json::parse(placed.body).at("environment").as_string(), "local");
  auto cloud_only = s.get_json("/v1/jobs?environment=cloud");
  EXPECT_EQ(cloud_only.at("jobs").as_array().size(), 1u);
  auto succeeded = s.get_json("/v1/jobs?state=succeeded");
  EXPECT_EQ(succeeded.at("jobs").as_array().size(), 1u);
  EXPECT_EQ(s.request("GET", "/v1/jobs?state=done").status, 400);
}

TEST(ServeShutdown, SigtermStopsTheServerButNotItsJobs) {
  ServeHarness s;
  s.start();
  std::int64_t id = s.submit(waiting_job("keeps-going", "", s.path("release")));
  ASSERT_TRUE(s.wait_state(id, "running"));
  pid_t shim = static_cast<pid_t>(s.job(id).at("pid").as_int64());
  int status = s.stop(SIGTERM);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(::kill(shim, 0), 0);
  s.start();
  touch(s.path("release"));
  ASSERT_TRUE(s.wait_state(id, "succeeded"));
}

TEST(ServeTls, ServesHttpsWithTheConfiguredCertificate) {
  ServeHarness s("  tls: {cert: cert.pem, key: key.pem}\n");
  std::string cmd =
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 -addext "
      "subjectAltName=IP:127.0.0.1 -keyout " +
      s.path("key.pem") + " -out " + s.path("cert.pem") + " 2>/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  s.start();
  EXPECT_EQ(s.url().rfind("https://", 0), 0u);
  HttpClientRequest r;
  r.url = s.url() + "/v1/status";
  r.headers.emplace_back("Authorization", "Bearer " + s.token());
  r.ca_file = s.path("cert.pem");
  auto resp = http_request(r);
  ASSERT_TRUE(resp) << resp.error().message;
  EXPECT_EQ(resp->status, 200);
  // Without the CA the certificate is refused.
  r.ca_file.clear();
  EXPECT_FALSE(http_request(r));
}

}  // namespace
}  // namespace hylab::testing
