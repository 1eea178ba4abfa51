// Pipelines on the real control plane: a file of several documents is a chain, each job
// starting when the one before has succeeded and the rest cancelled when one fails; a job
// may name the jobs it waits for; the chain survives a restart of the server.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "serve_harness.h"

namespace hylab::testing {
namespace {

using ::testing::HasSubstr;

std::vector<std::int64_t> submit_pipeline(const ServeHarness& s, const std::string& yaml) {
  auto r = s.request("POST", "/v1/jobs?file=chain.yaml", yaml);
  EXPECT_EQ(r.status, 201) << r.body;
  std::vector<std::int64_t> ids;
  if (r.status != 201) return ids;
  json::value v = json::parse(r.body);
  EXPECT_EQ(v.at("pipeline").as_string(), "chain");
  for (const auto& j : v.at("jobs").as_array()) ids.push_back(j.at("id").as_int64());
  return ids;
}

TEST(Pipeline, EachJobStartsWhenTheOneBeforeHasSucceeded) {
  ServeHarness s;
  s.start();
  std::string marker = s.dir() + "/prepared";
  auto ids = submit_pipeline(s,
                             "name: chain\n---\nname: prepare\ncategory: data-processing\n"
                             "run: sleep 0.5; echo ready > " +
                                 marker +
                                 "\n---\nname: train\n"
                                 "category: development\nresources: {accelerators: RTX4090:1}\n"
                                 "run: cat " +
                                 marker + "\n");
  ASSERT_EQ(ids.size(), 2U);
  auto second = s.job(ids[1]);
  EXPECT_EQ(second.at("state").as_string(), "pending");
  EXPECT_EQ(second.at("after").as_array().at(0).as_int64(), ids[0]);
  EXPECT_THAT(std::string(second.at("reason").as_string()),
              HasSubstr("waits for job " + std::to_string(ids[0]) + " (prepare"));
  ASSERT_TRUE(s.wait_state(ids[1], "succeeded"));
  EXPECT_EQ(s.state(ids[0]), "succeeded");
  EXPECT_THAT(s.log(ids[1]), HasSubstr("ready"));  // it ran after the file was written
  // Each job was placed on its own.
  EXPECT_EQ(s.job(ids[0]).at("rule").as_string(), "data-matrix");
  EXPECT_EQ(s.job(ids[1]).at("rule").as_string(), "development");
}

TEST(Pipeline, AJobGroupStartsItsJobsTogether) {
  ServeHarness s;
  s.start();
  // Each job waits for the other's marker: only jobs started together both succeed.
  std::string a = s.dir() + "/a", b = s.dir() + "/b";
  auto r = s.request("POST", "/v1/jobs?file=chain.yaml",
                     "name: chain\nexecution: parallel\n---\nname: a\ncategory: development\n"
                     "run: touch " +
                         a + "; for i in $(seq 200); do test -e " + b +
                         " && exit 0; sleep 0.05; done; exit 1\n---\nname: b\n"
                         "category: development\nrun: touch " +
                         b + "; for i in $(seq 200); do test -e " + a +
                         " && exit 0; sleep 0.05; done; exit 1\n");
  ASSERT_EQ(r.status, 201) << r.body;
  json::value v = json::parse(r.body);
  EXPECT_TRUE(v.at("parallel").as_bool());
  auto first = v.at("jobs").as_array().at(0).at("id").as_int64();
  auto second = v.at("jobs").as_array().at(1).at("id").as_int64();
  EXPECT_TRUE(s.job(second).at("after").as_array().empty());
  ASSERT_TRUE(s.wait_state(first, "succeeded"));
  ASSERT_TRUE(s.wait_state(second, "succeeded"));
}

TEST(Pipeline, AFailureCancelsTheRestSayingWhich) {
  ServeHarness s;
  s.start();
  auto ids = submit_pipeline(s,
                             "name: chain\n---\nname: a\ncategory: development\nrun: 'true'\n"
                             "---\nname: b\ncategory: development\nrun: exit 4\n---\nname: c\n"
                             "category: development\nrun: echo never\n---\nname: d\n"
                             "category: development\nrun: echo never\n");
  ASSERT_EQ(ids.size(), 4U);
  ASSERT_TRUE(s.wait_state(ids[3], "cancelled"));
  EXPECT_EQ(s.state(ids[0]), "succeeded");
  EXPECT_EQ(s.state(ids[1]), "failed");
  EXPECT_EQ(s.state(ids[2]), "cancelled");
  EXPECT_THAT(std::string(s.job(ids[2]).at("reason").as_string()),
              HasSubstr("cancelled: job " + std::to_string(ids[1]) + " (b) failed"));
  EXPECT_THAT(std::string(s.job(ids[3]).at("reason").as_string()),
              HasSubstr("job " + std::to_string(ids[2]) + " (c) cancelled"));
  EXPECT_TRUE(s.job(ids[3]).at("started_at").is_null());
}

TEST(Pipeline, AJobNamesTheJobsItWaitsForAndAnUnplaceableChainStoresNothing) {
  ServeHarness s;
  s.start();
  std::int64_t first = s.submit("category: development\nrun: sleep 0.3\n");
  ASSERT_GT(first, 0);
  auto r = s.request("POST", "/v1/jobs?after=" + std::to_string(first),
                     "category: development\nrun: echo after\n");
  ASSERT_EQ(r.status, 201) << r.body;
  std::int64_t second = json::parse(r.body).at("id").as_int64();
  ASSERT_TRUE(s.wait_state(second, "succeeded"));
  EXPECT_GE(s.job(second).at("started_at").as_string(), s.job(first).at("ended_at").as_string());
  // Waiting for a job that failed, or one that does not exist, is refused.
  std::int64_t failed = s.submit("category: development\nrun: exit 1\n");
  ASSERT_TRUE(s.wait_state(failed, "failed"));
  r = s.request("POST", "/v1/jobs?after=" + std::to_string(failed), "run: x\n");
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_THAT(r.body, HasSubstr("would never start"));
  EXPECT_EQ(s.request("POST", "/v1/jobs?after=99999", "run: x\n").status, 404);
  EXPECT_EQ(s.request("POST", "/v1/jobs?after=1;2", "run: x\n").status, 400);
  // A chain with one job the lab cannot hold, of sensitive data: nothing is stored.
  auto before = s.get_json("/v1/jobs").at("jobs").as_array().size();
  r = s.request("POST", "/v1/jobs",
                "name: a\nrun: 'true'\n---\nname: b\nresources: {accelerators: H100:8}\n"
                "data: {sensitivity: sensitive}\nrun: 'true'\n");
  EXPECT_EQ(r.status, 422) << r.body;
  EXPECT_THAT(r.body, HasSubstr("b: cannot place"));
  EXPECT_EQ(s.get_json("/v1/jobs").at("jobs").as_array().size(), before);
  // The place endpoint gives one decision per document.
  r = s.request("POST", "/v1/place", "name: p\n---\nrun: a\n---\nrun: b\n");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body).at("decisions").as_array().size(), 2U);
}

TEST(Pipeline, HeldJobsWaitAcrossARestartAndCancellingOneCancelsTheRest) {
  ServeHarness s;
  s.start();
  auto ids = submit_pipeline(s,
                             "name: chain\n---\nname: long\ncategory: development\n"
                             "run: sleep 60\n---\nname: next\ncategory: development\n"
                             "run: 'true'\n---\nname: last\ncategory: development\n"
                             "run: 'true'\n");
  ASSERT_EQ(ids.size(), 3U);
  ASSERT_TRUE(s.wait_state(ids[0], "running"));
  s.stop(SIGTERM);
  s.start();
  EXPECT_EQ(s.state(ids[1]), "pending");  // still held, not started by the restart
  auto r = s.request("POST", "/v1/jobs/" + std::to_string(ids[1]) + "/cancel");
  EXPECT_EQ(r.status, 200) << r.body;
  ASSERT_TRUE(s.wait_state(ids[2], "cancelled"));
  EXPECT_THAT(std::string(s.job(ids[2]).at("reason").as_string()), HasSubstr("(next) cancelled"));
  EXPECT_EQ(s.state(ids[0]), "running");  // the job before is not touched
  s.request("POST", "/v1/jobs/" + std::to_string(ids[0]) + "/cancel");
  EXPECT_TRUE(s.wait_state(ids[0], "cancelled"));
}

}  // namespace
}  // namespace hylab::testing
