// The client subcommands against a real server: run --follow, jobs, logs, cancel,
// status, and the one-line message when no server runs.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "serve_harness.h"

namespace hylab::testing {
namespace {

using ::testing::HasSubstr;

struct Ran {
  int code;
  std::string out;
};

Ran hylab(const std::string& args) {
  std::string cmd = std::string(HYLAB_BINARY) + " " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

TEST(CliClient, RunFollowJobsLogsStatus) {
  ServeHarness s;
  s.start();
  std::string cfg = "--config " + s.config();
  std::ofstream(s.path("job.yaml"))
      << "name: hello\ncategory: development\nresources: {accelerators: RTX4090:1}\n"
         "run: echo hello from $HYLAB_JOB_ID\n";
  Ran run = hylab("run " + s.path("job.yaml") + " --follow " + cfg);
  EXPECT_EQ(run.code, 0) << run.out;
  EXPECT_THAT(run.out, HasSubstr("job 1 (hello): local by rule development"));
  EXPECT_THAT(run.out, HasSubstr("hello from 1"));
  EXPECT_THAT(run.out, HasSubstr("job 1 succeeded"));
  Ran jobs = hylab("jobs " + cfg);
  EXPECT_EQ(jobs.code, 0);
  EXPECT_THAT(jobs.out, ::testing::ContainsRegex("1 +hello +succeeded +local +development"));
  Ran json_jobs = hylab("jobs -o json " + cfg);
  EXPECT_EQ(json::parse(json_jobs.out).as_array().at(0).at("state").as_string(), "succeeded");
  EXPECT_THAT(hylab("logs 1 " + cfg).out, HasSubstr("hello from 1"));
  Ran status = hylab("status " + cfg);
  EXPECT_EQ(status.code, 0);
  EXPECT_THAT(status.out, HasSubstr("inventory: 2 GPUs from config"));
  EXPECT_THAT(status.out, HasSubstr("1 succeeded"));
  std::ofstream(s.path("fail.yaml")) << "category: development\nrun: exit 4\n";
  EXPECT_EQ(hylab("run --follow " + s.path("fail.yaml") + " " + cfg).code, 1);
  Ran cancel = hylab("cancel 1 " + cfg);
  EXPECT_EQ(cancel.code, 1);
  EXPECT_THAT(cancel.out, HasSubstr("job 1 has already ended (succeeded)"));
  std::ofstream(s.path("bad.yaml")) << "catgory: x\n";
  Ran bad = hylab("run " + s.path("bad.yaml") + " " + cfg);
  EXPECT_EQ(bad.code, 2);
  EXPECT_THAT(bad.out, HasSubstr("bad.yaml:1:1: error: catgory: unknown key"));
}

TEST(CliClient, SaysWhenNoServerRuns) {
  ServeHarness s;
  s.start();
  s.stop(SIGTERM);
  Ran r = hylab("status --config " + s.config());
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("hylab serve is not running at http://127.0.0.1:"));
  EXPECT_THAT(r.out, HasSubstr("start it with 'hylab serve --config hylab.yaml'"));
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1);
}

}  // namespace
}  // namespace hylab::testing
