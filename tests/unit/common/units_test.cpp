#include "common/units.h"

#include <gtest/gtest.h>

namespace hylab {
namespace {

TEST(ParseBytes, DecimalAndBinarySuffixes) {
  EXPECT_EQ(*parse_bytes("250GB", kGB), 250 * kGB);
  EXPECT_EQ(*parse_bytes("1.5TiB", kGB), kTiB + kTiB / 2);
}

}  // namespace
}  // namespace hylab
