#include "gateway/matching.h"

#include <gtest/gtest.h>

namespace hylab::gateway {
namespace {

TEST(GlobMatch, StarsAndLiterals) {
  EXPECT_TRUE(glob_match("/v1/embeddings", "/v1/embeddings"));
  EXPECT_FALSE(glob_match("/v1/embeddings", "/v1/embeddings2"));
  EXPECT_TRUE(glob_match("/internal/*", "/internal/a/b"));
  EXPECT_FALSE(glob_match("/internal/*", "/internals"));
  EXPECT_TRUE(glob_match("*/secret", "/a/b/secret"));
  EXPECT_TRUE(glob_match("/a*c*e", "/abcde"));
  EXPECT_FALSE(glob_match("/a*c*e", "/abcd"));
  EXPECT_TRUE(glob_match("*", ""));
}

TEST(ContainsPattern, DigitsAndCase) {
  EXPECT_TRUE(contains_pattern("my SSN is 123-45-6789, ok", "###-##-####"));
  EXPECT_FALSE(contains_pattern("my SSN is 123-45-678x", "###-##-####"));
  EXPECT_TRUE(contains_pattern("Patient ID 7", "patient id"));
  EXPECT_FALSE(contains_pattern("short", "longer than the text"));
  EXPECT_FALSE(contains_pattern("anything", ""));
}

TEST(RetryAfter, SecondsOrADate) {
  EXPECT_DOUBLE_EQ(retry_after_seconds("30"), 30);
  EXPECT_DOUBLE_EQ(retry_after_seconds("1.5"), 1.5);
  EXPECT_DOUBLE_EQ(retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT"), 5);
}

TEST(UsageObject, FindsTheKeyNotTheWord) {
  std::string_view answer =
      R"({"choices":[{"message":{"content":"the \"usage\": {\"x\": 1} of words"}}],)"
      R"("usage" : {"prompt_tokens":12,"completion_tokens":7,"details":{"cached":0}}})";
  EXPECT_EQ(usage_object(answer),
            R"({"prompt_tokens":12,"completion_tokens":7,"details":{"cached":0}})");
  EXPECT_EQ(usage_object(R"({"choices":[],"usage":null})"), "");
  EXPECT_EQ(usage_object(R"({"usage":{"prompt_tokens":1)"), "");  // cut short
  EXPECT_EQ(usage_object("data: [DONE]"), "");
}

}  // namespace
}  // namespace hylab::gateway
