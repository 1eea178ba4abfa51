#include "common/units.h"

#include <gtest/gtest.h>

namespace hylab {
namespace {

TEST(ParseBytes, DecimalAndBinarySuffixes) {
  EXPECT_EQ(*parse_bytes("250GB", kGB), 250 * kGB);
  EXPECT_EQ(*parse_bytes("1.5TiB", kGB), kTiB + kTiB / 2);
  EXPECT_EQ(*parse_bytes("512 MiB", kGB), 512 * kMiB);
  EXPECT_EQ(*parse_bytes("4T", kGB), 4 * kTB);
  EXPECT_EQ(*parse_bytes("100gb", kGB), 100 * kGB);
  EXPECT_EQ(*parse_bytes("64Gi", kGB), 64 * kGiB);
}

TEST(ParseBytes, BareNumberUsesTheCallersUnit) {
  EXPECT_EQ(*parse_bytes("32", kGiB), 32 * kGiB);
  EXPECT_EQ(*parse_bytes("2000", kGB), 2000 * kGB);
}

TEST(ParseBytes, RejectsNegativeUnknownAndGarbage) {
  auto neg = parse_bytes("-5GB", kGB);
  ASSERT_FALSE(neg);
  EXPECT_EQ(neg.error().message, "a size cannot be negative, got '-5GB'");
  auto unit = parse_bytes("5XB", kGB);
  ASSERT_FALSE(unit);
  EXPECT_NE(unit.error().message.find("unknown size unit 'xb'"), std::string::npos);
  auto garbage = parse_bytes("lots", kGB);
  ASSERT_FALSE(garbage);
  EXPECT_EQ(garbage.error().message, "expected a size such as 250GB or 1.5TiB, got 'lots'");
  EXPECT_FALSE(parse_bytes("1.2.3GB", kGB));
  EXPECT_FALSE(parse_bytes("", kGB));
  EXPECT_FALSE(parse_bytes("99999999999PB", kGB));
}

TEST(ParseDuration, UnitsAndCombinations) {
  EXPECT_DOUBLE_EQ(*parse_duration_hours("4h"), 4);
  EXPECT_DOUBLE_EQ(*parse_duration_hours("90m"), 1.5);
  EXPECT_DOUBLE_EQ(*parse_duration_hours("1h30m"), 1.5);
  EXPECT_DOUBLE_EQ(*parse_duration_hours("2d"), 48);
  EXPECT_DOUBLE_EQ(*parse_duration_hours("3600s"), 1);
  EXPECT_DOUBLE_EQ(*parse_duration_hours("1800000ms"), 0.5);
  EXPECT_DOUBLE_EQ(*parse_duration_hours("12"), 12);
  EXPECT_FALSE(parse_duration_hours("-1h"));
  EXPECT_FALSE(parse_duration_hours("4x"));
  EXPECT_FALSE(parse_duration_hours("h"));
  EXPECT_FALSE(parse_duration_hours("4h5"));
}

TEST(Format, BytesHoursMoney) {
  EXPECT_EQ(format_bytes(250 * kGB), "250 GB");
  EXPECT_EQ(format_bytes(kTiB + kTiB / 2), "1.5 TiB");
  EXPECT_EQ(format_bytes(24 * kGiB), "24 GiB");
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_hours(1.5), "1h30m");
  EXPECT_EQ(format_hours(49.5), "2d1h30m");
  EXPECT_EQ(format_usd(1825), "$1,825.00");
  EXPECT_EQ(format_usd(1234567.891), "$1,234,567.89");
  EXPECT_EQ(format_usd(0.0416), "$0.0416");
}

}  // namespace
}  // namespace hylab
