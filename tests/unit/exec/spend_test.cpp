// Spend (exec/spend.h): a lab job costs its decision's hourly rate for the time it ran, a
// cloud job what its executor recorded; a job crossing midnight is split across the days;
// a report's window cuts a job; the month's cloud spend counts cloud jobs only.
#include "exec/spend.h"

#include <gtest/gtest.h>

namespace hylab::exec {
namespace {

store::JobRecord job(std::int64_t id, const std::string& env, double start,
                     std::optional<double> end) {
  store::JobRecord j;
  j.id = id;
  j.name = "j" + std::to_string(id);
  j.environment = env;
  j.state = end ? store::JobState::kSucceeded : store::JobState::kRunning;
  j.started_at = start;
  j.ended_at = end;
  // The lab's share: $0.50 for 2 hours, i.e. $0.25/h.
  j.decision = R"({"cost": {"local": {"fits": true, "hours": 2, "usd": 0.5}}})";
  return j;
}

TEST(Spend, LabJobsCostTheirRateCloudJobsWhatWasRecorded) {
  double noon = day_start(1.8e9) + 12 * 3600;
  auto lab = job(1, "local", noon, noon + 4 * 3600);
  EXPECT_DOUBLE_EQ(job_cost_usd(lab, noon + 5 * 3600), 1.0);
  auto running = job(2, "local", noon, std::nullopt);
  EXPECT_DOUBLE_EQ(job_cost_usd(running, noon + 3600), 0.25);
  auto cloud = job(3, "cloud", noon, noon + 3600);
  cloud.target = "aws";
  cloud.cost_usd = 32.77;
  EXPECT_DOUBLE_EQ(job_cost_usd(cloud, noon + 7200), 32.77);
  auto never = job(4, "cloud", 0, std::nullopt);
  never.started_at.reset();
  EXPECT_DOUBLE_EQ(job_cost_usd(never, noon), 0);
}

TEST(Spend, AJobAcrossMidnightCountsOnBothDays) {
  double d0 = day_start(1.8e9);
  double d1 = day_start(d0 + 36 * 3600);
  auto cloud = job(1, "cloud", d1 - 3600, d1 + 3 * 3600);  // 23:00 to 03:00
  cloud.target = "aws";
  cloud.cost_usd = 40;
  auto lab = job(2, "local", d0 + 3600, d0 + 3 * 3600);  // $0.50 on day 0
  SpendReport r = spend_report({cloud, lab}, d0, d1 + 12 * 3600);
  ASSERT_EQ(r.days.size(), 2U);
  EXPECT_EQ(r.days[0].day, day_label(d0));
  EXPECT_DOUBLE_EQ(r.days[0].usd_by_environment["cloud"], 10);
  EXPECT_DOUBLE_EQ(r.days[0].usd_by_environment["local"], 0.5);
  EXPECT_EQ(r.days[1].day, day_label(d1));
  EXPECT_DOUBLE_EQ(r.days[1].usd_by_environment["cloud"], 30);
  EXPECT_DOUBLE_EQ(r.total_usd, 40.5);
  EXPECT_DOUBLE_EQ(r.usd_by_environment["cloud"], 40);
  ASSERT_EQ(r.jobs.size(), 2U);
  EXPECT_DOUBLE_EQ(r.jobs[0].hours, 4);
  // A window from midnight keeps only the part after it.
  SpendReport later = spend_report({cloud, lab}, d1, d1 + 12 * 3600);
  EXPECT_DOUBLE_EQ(later.total_usd, 30);
  ASSERT_EQ(later.days.size(), 1U);
  EXPECT_DOUBLE_EQ(later.jobs[0].hours, 3);
}

TEST(Spend, TheMonthsCloudSpendCountsCloudJobsInsideTheMonth) {
  double m = month_start(1.8e9);
  double prev = month_start(m - 86400);
  EXPECT_LT(prev, m);
  auto inside = job(1, "cloud", m + 3600, m + 2 * 3600);
  inside.target = "aws";
  inside.cost_usd = 5;
  auto across = job(2, "cloud", m - 3600, m + 3600);  // half of it in this month
  across.target = "aws";
  across.cost_usd = 8;
  auto lab = job(3, "local", m + 3600, m + 7200);
  EXPECT_DOUBLE_EQ(cloud_spend_this_month({inside, across, lab}, m + 86400), 9);
}

}  // namespace
}  // namespace hylab::exec
