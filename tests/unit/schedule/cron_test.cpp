// Cron expressions with cronie's meaning. The expected instants of the DST cases were worked
// out apart from hylab, with Python's zoneinfo on the same tzdata.
#include "schedule/cron.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace hylab::schedule {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

Cron cron(const std::string& e) {
  auto c = Cron::parse(e);
  EXPECT_TRUE(c) << e << ": " << (c ? "" : c.error().message);
  return c ? *c : *Cron::parse("* * * * *");
}

std::string refused(const std::string& e) {
  auto c = Cron::parse(e);
  EXPECT_FALSE(c) << e << " parsed";
  return c ? "" : c.error().message;
}

Instant at(const std::string& rfc3339) { return *parse_instant(rfc3339); }

std::vector<std::string> next(const std::string& e, const std::string& zone,
                              const std::string& from, int n) {
  std::vector<std::string> out;
  for (auto t : cron(e).next_n(at(from), **find_zone(zone), n)) out.push_back(format_utc(t));
  return out;
}

TEST(Cron, FieldsListsRangesStepsAndNames) {
  EXPECT_THAT(next("*/15 * * * *", "UTC", "2026-01-01T00:00:00Z", 3),
              ElementsAre("2026-01-01T00:15:00Z", "2026-01-01T00:30:00Z", "2026-01-01T00:45:00Z"));
  EXPECT_THAT(next("1-30/10 9 * * *", "UTC", "2026-01-01T00:00:00Z", 3),
              ElementsAre("2026-01-01T09:01:00Z", "2026-01-01T09:11:00Z", "2026-01-01T09:21:00Z"));
  EXPECT_THAT(next("50/5 0 * * *", "UTC", "2026-01-01T00:00:00Z", 3),  // 50-59/5
              ElementsAre("2026-01-01T00:50:00Z", "2026-01-01T00:55:00Z", "2026-01-02T00:50:00Z"));
  // 2026-01-05 is a Monday; jan-mar, mon-fri, and Sunday as 0 or 7.
  EXPECT_THAT(next("0 8 * JAN-mar Mon-Fri", "UTC", "2026-01-02T12:00:00Z", 2),
              ElementsAre("2026-01-05T08:00:00Z", "2026-01-06T08:00:00Z"));
  EXPECT_EQ(next("0 2 * * 0", "UTC", "2026-01-01T00:00:00Z", 1),
            next("0 2 * * 7", "UTC", "2026-01-01T00:00:00Z", 1));
  EXPECT_THAT(next("0 2 * * 0", "UTC", "2026-01-01T00:00:00Z", 1),
              ElementsAre("2026-01-04T02:00:00Z"));
  EXPECT_THAT(next("0 0 29 2 *", "UTC", "2026-01-01T00:00:00Z", 1),
              ElementsAre("2028-02-29T00:00:00Z"));
  // Strictly after: a firing at the start instant is not repeated.
  EXPECT_THAT(next("0 * * * *", "UTC", "2026-01-01T01:00:00Z", 1),
              ElementsAre("2026-01-01T02:00:00Z"));
}

TEST(Cron, Nicknames) {
  EXPECT_THAT(next("@hourly", "UTC", "2026-01-01T00:30:00Z", 1),
              ElementsAre("2026-01-01T01:00:00Z"));
  EXPECT_THAT(next("@daily", "UTC", "2026-01-01T00:30:00Z", 1),
              ElementsAre("2026-01-02T00:00:00Z"));
  EXPECT_EQ(next("@midnight", "UTC", "2026-01-01T00:30:00Z", 1),
            next("@daily", "UTC", "2026-01-01T00:30:00Z", 1));
  EXPECT_THAT(next("@weekly", "UTC", "2026-01-01T00:00:00Z", 1),
              ElementsAre("2026-01-04T00:00:00Z"));
  EXPECT_THAT(next("@monthly", "UTC", "2026-01-01T00:00:00Z", 1),
              ElementsAre("2026-02-01T00:00:00Z"));
  EXPECT_EQ(next("@yearly", "UTC", "2026-01-01T00:00:00Z", 1),
            next("@annually", "UTC", "2026-01-01T00:00:00Z", 1));
  EXPECT_EQ(cron("@daily").expression(), "@daily");
  EXPECT_THAT(refused("@reboot"), HasSubstr("@reboot is not a time"));
  EXPECT_THAT(refused("@often"), HasSubstr("is not a cron nickname"));
}

TEST(Cron, DayOfMonthAndDayOfWeekAreOredOnlyWhenNeitherBeginsWithAStar) {
  // Both restricted: the 13th or any Friday.
  EXPECT_THAT(next("0 0 13 * fri", "UTC", "2026-01-01T00:00:00Z", 3),
              ElementsAre("2026-01-02T00:00:00Z", "2026-01-09T00:00:00Z", "2026-01-13T00:00:00Z"));
  // "*/2" begins with a star: ANDed, so odd days that are Mondays (5, 19 Jan; 9 Feb...).
  EXPECT_THAT(next("0 12 */2 * 1", "UTC", "2026-01-01T00:00:00Z", 3),
              ElementsAre("2026-01-05T12:00:00Z", "2026-01-19T12:00:00Z", "2026-02-09T12:00:00Z"));
  EXPECT_TRUE(cron("*/5 3 * * *").wildcard());
  EXPECT_TRUE(cron("0 * * * *").wildcard());
  EXPECT_FALSE(cron("0 3 * * *").wildcard());
  EXPECT_FALSE(cron("0,30 2-3 * * *").wildcard());
}

struct DstCase {
  const char* zone;
  const char* gap_job;  // a fixed time inside the spring-forward gap
  const char* gap_from;
  const char* gap_fires;        // the first instant after the gap
  const char* wildcard_in_gap;  // a wildcard job with times in the gap
  const char* wildcard_fires;   // its first firing: a real time, none moved out of the gap
  const char* repeat_job;       // a fixed time inside the fall-back repeat
  const char* repeat_from;
  const char* first;   // its first occurrence
  const char* second;  // the repeat, which a wildcard job also fires at
  const char* wildcard_repeat_job;
};

class CronDst : public ::testing::TestWithParam<DstCase> {};

TEST_P(CronDst, GapsFireFixedJobsOnceAfterTheGapAndRepeatsOnlyWildcardJobsTwice) {
  const DstCase& c = GetParam();
  const date::time_zone& zone = **find_zone(c.zone);
  auto gap = cron(c.gap_job).next_n(at(c.gap_from), zone, 2);
  ASSERT_EQ(gap.size(), 2U);
  EXPECT_EQ(format_utc(gap[0]), c.gap_fires);
  EXPECT_GT(gap[1] - gap[0], std::chrono::hours(20));           // once, then the next day
  auto w = cron(c.wildcard_in_gap).next(at(c.gap_from), zone);  // nothing moved out of the gap
  ASSERT_TRUE(w);
  EXPECT_EQ(format_utc(*w), c.wildcard_fires);
  auto fixed = cron(c.repeat_job).next_n(at(c.repeat_from), zone, 2);
  EXPECT_EQ(format_utc(fixed[0]), c.first);
  EXPECT_GT(fixed[1] - fixed[0], std::chrono::hours(20));  // not again at the repeat
  auto wild = cron(c.wildcard_repeat_job).next_n(at(c.first) - std::chrono::minutes(1), zone, 2);
  EXPECT_EQ(format_utc(wild[0]), c.first);
  EXPECT_EQ(format_utc(wild[1]), c.second);
}

INSTANTIATE_TEST_SUITE_P(
    Zones, CronDst,
    ::testing::Values(
        DstCase{"Europe/Berlin", "30 2 * * *", "2026-03-28T12:00:00Z", "2026-03-29T01:00:00Z",
                "*/30 2 * * *", "2026-03-30T00:00:00Z", "30 2 * * *", "2026-10-24T12:00:00Z",
                "2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z", "30 * * * *"},
        DstCase{"America/New_York", "30 2 * * *", "2026-03-07T12:00:00Z", "2026-03-08T07:00:00Z",
                "* 2 * * *", "2026-03-09T06:00:00Z", "30 1 * * *", "2026-10-31T12:00:00Z",
                "2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z", "30 * * * *"},
        DstCase{"Australia/Sydney", "30 2 * * *", "2026-10-03T00:00:00Z", "2026-10-03T16:00:00Z",
                "*/10 2 * * *", "2026-10-04T15:00:00Z", "30 2 * * *", "2026-04-04T00:00:00Z",
                "2026-04-04T15:30:00Z", "2026-04-04T16:30:00Z", "30 * * * *"},
        // A 30-minute shift: 02:00-02:30 missing in October, 01:30-02:00 twice in April.
        DstCase{"Australia/Lord_Howe", "15 2 * * *", "2026-10-03T00:00:00Z", "2026-10-03T15:30:00Z",
                "*/30 2 * * *", "2026-10-03T15:30:00Z", "45 1 * * *", "2026-04-04T00:00:00Z",
                "2026-04-04T14:45:00Z", "2026-04-04T15:15:00Z", "45 * * * *"}),
    [](const auto& info) {
      std::string n = info.param.zone;
      for (auto& ch : n) {
        if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
      }
      return n;
    });

TEST(Cron, TheGuidesExamplesInTheirZones) {
  // "0 2 * * 0 — weekly at 2 AM Sunday", Berlin in winter and summer.
  EXPECT_THAT(next("0 2 * * 0", "Europe/Berlin", "2026-03-23T00:00:00Z", 2),
              ElementsAre("2026-03-29T01:00:00Z", "2026-04-05T00:00:00Z"));
  EXPECT_THAT(next("0 0 * * sat", "America/New_York", "2026-01-01T00:00:00Z", 1),
              ElementsAre("2026-01-03T05:00:00Z"));
}

TEST(Cron, BadExpressionsNameTheFieldAndTheValue) {
  EXPECT_THAT(refused("60 * * * *"), HasSubstr("minute: '60' is out of range 0-59"));
  EXPECT_THAT(refused("0 24 * * *"), HasSubstr("hour: '24' is out of range 0-23"));
  EXPECT_THAT(refused("0 0 0 * *"), HasSubstr("day-of-month: '0' is out of range 1-31"));
  EXPECT_THAT(refused("0 0 * 13 *"), HasSubstr("month: '13' is out of range 1-12"));
  EXPECT_THAT(refused("0 0 * * 8"), HasSubstr("day-of-week: '8' is out of range 0-7"));
  EXPECT_THAT(refused("0 0 * * funday"), HasSubstr("day-of-week: 'funday' is not a day"));
  EXPECT_THAT(refused("0 0 * smarch *"), HasSubstr("month: 'smarch' is not a month"));
  EXPECT_THAT(refused("*/0 * * * *"), HasSubstr("minute: '*/0' has a step of 0"));
  EXPECT_THAT(refused("5-1 * * * *"), HasSubstr("minute: '5-1' is a range that runs backwards"));
  EXPECT_THAT(refused("1,,2 * * * *"), HasSubstr("has an empty list item"));
  EXPECT_THAT(refused("0 0 * *"), HasSubstr("expected 5 fields (minute hour day-of-month month "
                                            "day-of-week), got 4"));
  EXPECT_THAT(refused("0 0 * * * *"), HasSubstr("got 6"));
  EXPECT_THAT(refused("0 0 31 2 *"), HasSubstr("can never fire"));
  EXPECT_THAT(refused("0 0 30,31 2 *"), HasSubstr("can never fire"));
  EXPECT_TRUE(Cron::parse("0 0 31 2 mon"));  // ORed: every Monday in February
  EXPECT_THAT(refused("CRON_TZ=Europe/Berlin 0 2 * * *"),
              HasSubstr("a time zone inside the expression is not read: give it as timezone:"));
  EXPECT_THAT(refused("TZ=UTC 0 2 * * *"), HasSubstr("give it as timezone:"));
  EXPECT_THAT(refused(""), HasSubstr("empty"));
  EXPECT_THAT(refused("0 0 * * 1/99999"), HasSubstr("step"));
  EXPECT_FALSE(find_zone("Mars/Olympus_Mons"));
  EXPECT_THAT(find_zone("Europe/Berln").error().message, HasSubstr("not a time zone"));
  EXPECT_FALSE(parse_instant("yesterday"));
  EXPECT_EQ(format_utc(at("2026-03-29T03:00:00+02:00")), "2026-03-29T01:00:00Z");
}

}  // namespace
}  // namespace hylab::schedule
