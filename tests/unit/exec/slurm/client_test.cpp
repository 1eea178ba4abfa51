// Parsing what Slurm 22.05 prints: `scontrol show job -o` lines (values with spaces, Unknown
// and None times, exit codes with signals, states that have not ended) and `sbatch
// --parsable`. The commands themselves run against a real cluster in
// tests/integration/slurm_test.cpp.
#include "exec/slurm/client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace hylab::exec::slurm {
namespace {

// As Slurm 22.05's `squeue --json` prints its jobs (fields trimmed to those hylab reads, plus
// some it ignores).
TEST(SlurmParse, SqueueJson) {
  const std::string text = R"({"meta": {"plugin": {"type": "openapi/v0.0.38"}}, "errors": [],
    "jobs": [
      {"account": "", "job_id": 1, "name": "hylab-1-train", "job_state": "RUNNING",
       "state_reason": "None", "partition": "cloud-spot", "restart_cnt": 2,
       "start_time": 1795962711, "end_time": 1827498711, "exit_code": 0,
       "comment": "hylab-ab12-1"},
      {"job_id": 2, "name": "waits", "job_state": "PENDING", "state_reason": "Resources",
       "partition": "cloud", "restart_cnt": 0, "start_time": 1795962999, "comment": ""}]})";
  auto jobs = parse_squeue_json(text);
  ASSERT_TRUE(jobs) << jobs.error().message;
  ASSERT_EQ(jobs->size(), 2u);
  const auto& r = (*jobs)[0];
  EXPECT_EQ(r.id, "1");
  EXPECT_EQ(r.state, "RUNNING");
  EXPECT_FALSE(r.ended());
  EXPECT_EQ(r.reason, "");
  EXPECT_EQ(r.partition, "cloud-spot");
  EXPECT_EQ(r.restarts, 2);
  EXPECT_EQ(r.comment, "hylab-ab12-1");
  EXPECT_FALSE(r.exit_code);  // read from scontrol once the job ended
  std::tm tm{};
  ASSERT_TRUE(strptime(r.start_time.c_str(), "%Y-%m-%dT%H:%M:%S", &tm));
  tm.tm_isdst = -1;
  EXPECT_EQ(std::mktime(&tm), 1795962711);
  EXPECT_EQ((*jobs)[1].reason, "Resources");
  EXPECT_EQ((*jobs)[1].start_time, "");  // an expected start is not a start
  EXPECT_FALSE(parse_squeue_json("squeue: error: invalid option --json"));
}

TEST(SlurmParse, ScontrolOneLinePerJob) {
  const std::string text =
      "JobId=12 JobName=hylab-7-hello UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=1 "
      "Nice=0 Account=(null) QOS=(null) JobState=COMPLETED Reason=None Dependency=(null) "
      "Requeue=0 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0 RunTime=00:00:01 "
      "TimeLimit=00:21:00 SubmitTime=2026-11-29T10:45:52 StartTime=2026-11-29T10:45:52 "
      "EndTime=2026-11-29T10:45:53 Partition=cloud NodeList=vm Command=/tmp/a b/job.sbatch "
      "WorkDir=/tmp Comment=hylab-ab12-7  StdErr=/tmp/x.log\n"
      "JobId=13 JobName=spot JobState=PENDING Reason=BeginTime Restarts=2 ExitCode=0:15 "
      "StartTime=Unknown EndTime=Unknown Partition=cloud-spot\n"
      "JobId=14 JobName=killed JobState=CANCELLED Reason=None Restarts=0 ExitCode=0:9 "
      "StartTime=2026-11-29T10:46:00 EndTime=2026-11-29T10:46:03 Partition=cloud\n";
  auto jobs = parse_scontrol(text);
  ASSERT_EQ(jobs.size(), 3u);
  EXPECT_EQ(jobs[0].id, "12");
  EXPECT_EQ(jobs[0].name, "hylab-7-hello");
  EXPECT_EQ(jobs[0].state, "COMPLETED");
  EXPECT_TRUE(jobs[0].ended());
  EXPECT_EQ(jobs[0].exit_code, 0);
  EXPECT_FALSE(jobs[0].signal);
  EXPECT_EQ(jobs[0].reason, "");
  EXPECT_EQ(jobs[0].start_time, "2026-11-29T10:45:52");
  EXPECT_EQ(jobs[0].partition, "cloud");
  EXPECT_EQ(jobs[0].comment, "hylab-ab12-7");  // Slurm prints two spaces after it
  // A requeued job waiting again: no exit code yet, whatever the last run left.
  EXPECT_EQ(jobs[1].state, "PENDING");
  EXPECT_FALSE(jobs[1].ended());
  EXPECT_FALSE(jobs[1].exit_code);
  EXPECT_EQ(jobs[1].restarts, 2);
  EXPECT_EQ(jobs[1].reason, "BeginTime");
  EXPECT_EQ(jobs[1].start_time, "");
  EXPECT_EQ(jobs[2].signal, 9);
  EXPECT_TRUE(parse_scontrol("").empty());
  EXPECT_TRUE(parse_scontrol("slurm_load_jobs error: Invalid job id specified\n").empty());
}

TEST(SlurmParse, SbatchParsable) {
  EXPECT_EQ(*parse_sbatch("42\n"), "42");
  EXPECT_EQ(*parse_sbatch("42;cluster-a\n"), "42");
  EXPECT_FALSE(parse_sbatch(""));
  auto bad = parse_sbatch("sbatch: error: Batch job submission failed\n");
  ASSERT_FALSE(bad);
  EXPECT_THAT(bad.error().message, ::testing::HasSubstr("not a job id"));
}

}  // namespace
}  // namespace hylab::exec::slurm
