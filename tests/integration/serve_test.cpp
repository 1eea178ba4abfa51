// The control plane end to end: the real `hylab serve`, real job processes.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <atomic>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include "common/text.h"
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

TEST(ServeLifecycle, ACountOfAnyModelGetsThatManyOfTheLabsGpus) {
  ServeHarness s;
  s.start();
  // "accelerators: 2", the first thing a new user types; a dstack task asking 20 GB cards.
  std::int64_t id = s.submit(
      "category: development\nresources: {accelerators: 2}\nrun: echo "
      "gpus=$CUDA_VISIBLE_DEVICES\n");
  std::int64_t dstack = s.submit(
      "type: task\nresources: {gpu: '20GB..'}\ncommands: [echo dstack=$CUDA_VISIBLE_DEVICES]\n");
  ASSERT_GT(id, 0);
  ASSERT_GT(dstack, 0);
  ASSERT_TRUE(s.wait_state(id, "succeeded"));
  ASSERT_TRUE(s.wait_state(dstack, "succeeded"));
  EXPECT_THAT(s.log(id), HasSubstr("gpus=0,1"));
  EXPECT_THAT(s.log(dstack), ::testing::ContainsRegex("dstack=[01]"));
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
  // Says how to authenticate, never where anything is on the server's disk.
  for (const auto* r : {&none, &wrong}) {
    EXPECT_THAT(r->body, HasSubstr("$HYLAB_TOKEN"));
    EXPECT_THAT(json::parse(r->body).at("error").as_string().c_str(), Not(HasSubstr("/")));
    EXPECT_THAT(r->body, Not(HasSubstr(s.state_dir())));
  }
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
  EXPECT_THAT(reply, HasSubstr("a malformed method"));
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

// ---- input that cannot break readers ----

// Rewrites job `id` in the state database as an older hylab stored it, before names were
// checked: `name` (which replaces `old`) in the name column and in the stored decision.
void store_name_as_an_older_hylab(const ServeHarness& s, std::int64_t id, const std::string& old,
                                  const std::string& name) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((s.state_dir() + "/hylab.db").c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db,
                               "UPDATE jobs SET name = ?1, decision = replace(decision, ?2, ?4) "
                               "WHERE id = ?3",
                               -1, &st, nullptr),
            SQLITE_OK);
  // SQLite stores text as given, UTF-8 or not, as an older hylab's insert did.
  sqlite3_bind_text(st, 1, name.data(), static_cast<int>(name.size()), SQLITE_TRANSIENT);
  std::string quoted = "\"" + old + "\"";
  sqlite3_bind_text(st, 2, quoted.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st, 3, id);
  // In the decision as Boost.JSON wrote it then: bytes that are not UTF-8 raw, ESC as \u001b.
  std::string in_json = json::serialize(json::value(name));
  sqlite3_bind_text(st, 4, in_json.data(), static_cast<int>(in_json.size()), SQLITE_TRANSIENT);
  EXPECT_EQ(sqlite3_step(st), SQLITE_DONE);
  sqlite3_finalize(st);
  sqlite3_close(db);
}

struct Ran {
  int code;
  std::string out;
};

Ran hylab_cli(const std::string& args) {
  std::string cmd = std::string(HYLAB_BINARY) + " " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// Regression: a job name with bytes that are not UTF-8, stored by an older hylab, made
// its decision read back as null and every listing fail, for every user; a name with
// terminal escapes was printed raw in `hylab jobs`.
TEST(ServeInput, StoredNamesThatAreNotTextAreShownEscapedAndListingsWork) {
  ServeHarness s;
  s.start();
  std::int64_t bad = s.submit("name: placeholder-one\ncategory: development\nrun: echo a\n");
  std::int64_t good = s.submit("name: fine\ncategory: development\nrun: echo b\n");
  ASSERT_TRUE(s.wait_state(bad, "succeeded"));
  ASSERT_TRUE(s.wait_state(good, "succeeded"));
  s.stop();
  const std::string stored = "bad\xff\xfe\x1b[31mred\xc2\x9b";
  store_name_as_an_older_hylab(s, bad, "placeholder-one", stored);
  s.start();

  // The API: valid UTF-8 documents, the bad bytes as \xNN, the controls as JSON escapes.
  auto list = s.request("GET", "/v1/jobs");
  ASSERT_EQ(list.status, 200);
  EXPECT_TRUE(valid_utf8(list.body));
  json::value jobs = json::parse(list.body);  // strict: as any client parses
  ASSERT_EQ(jobs.at("jobs").as_array().size(), 2u);
  const std::string shown = "bad\\xff\\xfe\x1b[31mred\xc2\x9b";
  EXPECT_EQ(jobs.at("jobs").at(0).at("name").as_string(), shown);
  EXPECT_EQ(jobs.at("jobs").at(1).at("name").as_string(), "fine");
  auto one = s.request("GET", "/v1/jobs/" + std::to_string(bad));
  ASSERT_EQ(one.status, 200);
  json::value job = json::parse(one.body);
  ASSERT_TRUE(job.at("decision").is_object()) << one.body;  // was null
  EXPECT_EQ(job.at("decision").at("name").as_string(), shown);
  auto cost = s.request("GET", "/v1/cost");
  ASSERT_EQ(cost.status, 200);
  EXPECT_TRUE(valid_utf8(cost.body));
  EXPECT_NO_THROW(json::parse(cost.body));

  // The CLI: the table shows the escapes, never the bytes a terminal would act on.
  std::string cfg = " --config " + s.config();
  Ran table = hylab_cli("jobs" + cfg);
  EXPECT_EQ(table.code, 0) << table.out;
  EXPECT_THAT(table.out, HasSubstr("bad\\xff\\xfe\\x1b[31mred\\u009b"));
  EXPECT_THAT(table.out, HasSubstr("fine"));
  EXPECT_EQ(table.out.find('\x1b'), std::string::npos);
  EXPECT_TRUE(valid_utf8(table.out));
  Ran as_json = hylab_cli("jobs -o json" + cfg);
  EXPECT_EQ(as_json.code, 0) << as_json.out;
  EXPECT_EQ(json::parse(as_json.out).at(0).at("name").as_string(), shown);
  Ran report = hylab_cli("cost report" + cfg);
  EXPECT_EQ(report.code, 0) << report.out;
  EXPECT_THAT(report.out, HasSubstr("bad\\xff\\xfe\\x1b[31mred"));
  EXPECT_EQ(report.out.find('\x1b'), std::string::npos);
}

TEST(ServeInput, SpecStringsThatAreNotTextAreRefusedNamingTheField) {
  ServeHarness s;
  s.start();
  auto diagnostics = [](const HttpClientResponse& r) {
    return json::parse(r.body).at("diagnostics").as_array();
  };
  auto escape = s.request("POST", "/v1/jobs?file=job.yaml", "name: \"x\\e[2J\"\nrun: echo\n");
  EXPECT_EQ(escape.status, 400);
  ASSERT_EQ(diagnostics(escape).size(), 1u);
  EXPECT_EQ(diagnostics(escape).at(0).at("key").as_string(), "name");
  EXPECT_THAT(escape.body, HasSubstr("job.yaml:1:7: error: name: control character U+001B (ESC)"));
  auto raw = s.request("POST", "/v1/jobs?file=job.yaml", "run: echo\nname: caf\xff\n");
  EXPECT_EQ(raw.status, 400);
  EXPECT_TRUE(valid_utf8(raw.body));
  EXPECT_THAT(raw.body, HasSubstr("job.yaml:2:10: error: byte 0xff is not valid UTF-8"));
  auto env = s.request("POST", "/v1/jobs", "envs: {K: \"\\x9b\"}\nrun: echo\n");
  EXPECT_EQ(env.status, 400);
  EXPECT_EQ(diagnostics(env).at(0).at("key").as_string(), "envs.K");
  auto file = s.request("POST", "/v1/jobs?file=a%1bb.yaml", "run: echo\n");
  EXPECT_EQ(file.status, 400);
  EXPECT_EQ(diagnostics(file).at(0).at("key").as_string(), "file");
  // Nothing refused was stored.
  EXPECT_TRUE(s.get_json("/v1/jobs").at("jobs").as_array().empty());
  // A script keeps its tabs and lines.
  std::int64_t ok = s.submit("name: ok\ncategory: development\nrun: |\n  echo a\n  \techo b\n");
  EXPECT_TRUE(s.wait_state(ok, "succeeded"));
}

TEST(ServeInput, StateDatabaseIsPrivateWhateverTheUmask) {
  ServeHarness s;
  mode_t old = ::umask(0);  // inherited by serve: SQLite alone would make the file 0644
  s.start();
  ::umask(old);
  std::int64_t id = s.submit("name: a\ncategory: development\nrun: echo a\n");
  ASSERT_TRUE(s.wait_state(id, "succeeded"));
  auto mode = [&](const std::string& name) {
    struct stat st {};
    return ::stat((s.state_dir() + "/" + name).c_str(), &st) == 0 ? st.st_mode & 0777 : 01000;
  };
  EXPECT_EQ(mode("hylab.db"), 0600u);
  EXPECT_EQ(mode("hylab.db-wal"), 0600u);
  EXPECT_EQ(mode("hylab.db-shm"), 0600u);
  // One an older hylab left readable by everyone is narrowed at the next start.
  s.stop();
  ::chmod((s.state_dir() + "/hylab.db").c_str(), 0644);
  s.start();
  EXPECT_EQ(mode("hylab.db"), 0600u);
}

// ---- lost jobs stop ----

TEST(ServeCrash, LostJobsProcessGroupIsKilledBeforeItsGpusAreFreed) {
  ServeHarness s;
  s.start();
  std::string pid_file = s.path("job.pid");
  std::int64_t orphan = s.submit(
      "name: orphan\ncategory: development\n"
      "resources: {accelerators: RTX4090:2}\n"
      "run: |\n  echo $$ > " +
      pid_file + ".tmp\n  mv " + pid_file + ".tmp " + pid_file + "\n  exec sleep 1000\n");
  ASSERT_TRUE(s.wait_state(orphan, "running"));
  pid_t job_pid = 0;
  auto is_sleep = [&] {
    auto text = read_text_file(pid_file, 64);
    if (!text) return false;
    job_pid = static_cast<pid_t>(std::stol(*text));
    auto cmd = read_text_file("/proc/" + std::to_string(job_pid) + "/cmdline", 4096);
    return cmd && cmd->rfind("sleep", 0) == 0;
  };
  ASSERT_TRUE(wait_until(is_sleep));
  auto shim = static_cast<pid_t>(s.job(orphan).at("pid").as_int64());
  // serve goes, then the shim while serve is down: nobody supervises the sleep any more.
  s.stop(SIGKILL);
  ::kill(shim, SIGKILL);
  ASSERT_TRUE(wait_until([&] { return !exec::local::process_start_time(shim); }));
  ASSERT_TRUE(exec::local::process_start_time(job_pid)) << "the job should outlive its shim";

  s.start();
  // Stopped before the server answers: its start (and with it the GPUs' release) waited.
  EXPECT_FALSE(exec::local::process_start_time(job_pid)) << "the job's sleep still runs";
  json::object j = s.job(orphan);
  EXPECT_EQ(j.at("state").as_string(), "lost");
  EXPECT_THAT(std::string(j.at("reason").as_string()),
              HasSubstr(fmt::format("its supervisor (pid {}) was gone when hylab serve started; "
                                    "its process group {} was killed (1 process)",
                                    shim, job_pid)));
  EXPECT_EQ(s.get_json("/v1/inventory").at("used").as_int64(), 0);
  std::int64_t next = s.submit(
      "name: next\ncategory: development\nresources: {accelerators: RTX4090:2}\nrun: echo next\n");
  ASSERT_TRUE(s.wait_state(next, "succeeded"));
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
