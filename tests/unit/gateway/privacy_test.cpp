#include "gateway/privacy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "../../support/compress.h"

namespace hylab::gateway {
namespace {

using hylab::testing::compress;

using ::testing::HasSubstr;

std::string path_of(std::string_view raw) {
  std::string why;
  auto t = normalize_target(raw, why);
  return t ? t->path : "refused: " + why;
}

TEST(NormalizeTarget, ReducesEverySpellingToOnePath) {
  EXPECT_EQ(path_of("/v1/embeddings"), "/v1/embeddings");
  EXPECT_EQ(path_of("/v1//embeddings"), "/v1/embeddings");
  EXPECT_EQ(path_of("/v1/%65mbeddings"), "/v1/embeddings");
  EXPECT_EQ(path_of("/x/../v1/embeddings"), "/v1/embeddings");
  EXPECT_EQ(path_of("/./v1/./embeddings"), "/v1/embeddings");
  EXPECT_EQ(path_of("/%2e%2e/v1/%2E/embeddings"), "/v1/embeddings");
  EXPECT_EQ(path_of("/../../v1/embeddings"), "/v1/embeddings");
  EXPECT_EQ(path_of("/v1/embeddings/"), "/v1/embeddings/");
  EXPECT_EQ(path_of("http://cloud.example/v1/embeddings?x=1"), "/v1/embeddings");
  EXPECT_EQ(path_of("HTTPS://h"), "/");
  EXPECT_EQ(path_of("/a%20b"), "/a%20b");
  EXPECT_EQ(path_of("/a%3bb"), "/a%3Bb");  // one spelling of a reserved escape
  std::string why;
  auto t = normalize_target("/v1/x?q=%2F&b", why);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->origin_form(), "/v1/x?q=%2F&b");  // the query is left as sent
}

TEST(NormalizeTarget, RefusesWhatCannotBeNormalisedSafely) {
  for (std::string raw : {"/v1%2fembeddings", "/v1%2Fembeddings", "/v1%5cembeddings",
                          "/v1\\embeddings", "/v1/%00", "/v1/%zz", "/v1/%4", "/v1/%", "v1"}) {
    EXPECT_THAT(path_of(raw), HasSubstr("refused")) << raw;
  }
}

struct Fixture : ::testing::Test {
  PrivacyRules rules;
  Fixture() {
    rules.routes = {"/v1/embeddings", "/internal/*"};
    rules.client_keys = {"key-of-the-clinic"};
    rules.patterns = {"###-##-####"};
  }
  Verdict of(std::string_view target, std::vector<HeaderView> headers = {},
             std::string_view body = {}) {
    std::string why;
    auto t = normalize_target(target, why);
    EXPECT_TRUE(t) << target << ": " << why;
    RequestFacts f{t ? &*t : nullptr, std::move(headers), body};
    return classify(rules, f);
  }
};
using Classify = Fixture;

TEST_F(Classify, RoutesMatchEverySpellingOfTheProtectedPath) {
  for (std::string p :
       {"/v1/embeddings", "/v1/embeddings/", "/v1//embeddings", "/v1/%65mbeddings",
        "/V1/EMBEDDINGS", "/x/../v1/embeddings", "/internal", "/internal/", "/Internal/x/y",
        "/v1/embeddings;v=1", "/v1/embeddings%3Bx", "//v1/embeddings", "/v1/embeddings?x=1",
        "http://a/v1/embeddings", "/v1/./embeddings", "/v1/embeddings/.", "/internal%3B/a"}) {
    auto v = of(p);
    EXPECT_TRUE(v.sensitive) << p;
    EXPECT_THAT(v.rule, HasSubstr("route")) << p;
  }
  for (std::string p : {"/v1/chat/completions", "/internalx", "/v1/embeddingsx", "/"}) {
    EXPECT_FALSE(of(p).sensitive) << p;
  }
}

TEST_F(Classify, EveryMarkingHeaderCountsAsAList) {
  auto marked = [&](std::vector<HeaderView> h) { return of("/v1/chat/completions", h).sensitive; };
  EXPECT_TRUE(marked({{"X-Hylab-Data", "sensitive"}}));
  EXPECT_TRUE(marked({{"x-hylab-data", "SENSITIVE"}}));
  EXPECT_TRUE(marked({{"X-Hylab-Data", "public"}, {"X-Hylab-Data", "sensitive"}}));
  EXPECT_TRUE(marked({{"X-Hylab-Data", "sensitive, pii"}}));
  EXPECT_TRUE(marked({{"X-Hylab-Data", "public, pii"}}));
  EXPECT_TRUE(marked({{"X-Hylab-Data", "\"sensitive\""}}));
  EXPECT_TRUE(marked({{"X-Hylab-Data", "regulated"}}));
  EXPECT_TRUE(marked({{"X-Hylab-Data", "secret"}}));
  EXPECT_TRUE(marked({{"X-Hylab-Data", ""}}));
  EXPECT_TRUE(marked({{"X_Hylab_Data", "sensitive"}}));
  EXPECT_FALSE(marked({{"X-Hylab-Data", "public"}}));
  EXPECT_FALSE(marked({{"X-Hylab-Data", "Internal, \"public\""}}));
  EXPECT_FALSE(marked({}));
}

TEST_F(Classify, ClientKeysInAnySchemeCaseAndSpacing) {
  auto keyed = [&](std::string_view name, std::string_view value) {
    return of("/v1/chat/completions", {{name, value}}).sensitive;
  };
  EXPECT_TRUE(keyed("Authorization", "Bearer key-of-the-clinic"));
  EXPECT_TRUE(keyed("authorization", "bearer key-of-the-clinic"));
  EXPECT_TRUE(keyed("Authorization", "BEARER \t key-of-the-clinic  "));
  EXPECT_TRUE(keyed("X-Api-Key", "key-of-the-clinic"));
  EXPECT_TRUE(keyed("api-key", " key-of-the-clinic"));
  EXPECT_FALSE(keyed("Authorization", "Bearer another-key"));
  EXPECT_FALSE(keyed("Authorization", "Bearer key-of-the-clinicX"));
  auto v = of("/", {{"Authorization", "Bearer key-of-the-clinic"}});
  EXPECT_THAT(v.rule, ::testing::Not(HasSubstr("key-of")));  // the secret is never named
}

// Found by the privacy suite: these reached the cloud (the Authorization replaced by the
// cloud's key, or the key field forwarded as sent).
TEST_F(Classify, ClientKeysInAnyFieldUnderAnyScheme) {
  auto keyed = [&](std::string_view name, std::string_view value) {
    return of("/v1/chat/completions", {{name, value}}).sensitive;
  };
  EXPECT_TRUE(keyed("Authorization", "Token key-of-the-clinic"));
  EXPECT_TRUE(keyed("Authorization", "ApiKey key-of-the-clinic"));
  EXPECT_TRUE(keyed("X_Api_Key", "key-of-the-clinic"));
  EXPECT_TRUE(keyed("api_key", "Key key-of-the-clinic"));
  EXPECT_TRUE(keyed("X-Custom-Auth", "clinic=key-of-the-clinic;"));
  EXPECT_FALSE(keyed("X_Api_Key", "xkey-of-the-clinic"));
  EXPECT_FALSE(keyed("Authorization", "Token key-of-the-clinic.2"));
  std::string head = "POST / HTTP/1.1\r\nX-Key: key-of-the-clinic\r\n\r\n";
  EXPECT_TRUE(egress_hit(rules, head, "", ""));
  rules.patterns.clear();  // keys are looked for without any pattern too
  EXPECT_TRUE(egress_hit(rules, head, "", ""));
  EXPECT_FALSE(egress_hit(rules, "POST / HTTP/1.1\r\nX-Key: other\r\n\r\n", "", ""));
}

// Basic credentials carry the key base64-encoded, as the user name or the password:
// "user:key-of-the-clinic" and "key-of-the-clinic:" (curl -u KEY: writes the latter).
TEST_F(Classify, ClientKeysInBasicCredentials) {
  auto keyed = [&](std::string_view value) {
    return of("/v1/chat/completions", {{"Authorization", value}}).sensitive;
  };
  EXPECT_TRUE(keyed("Basic dXNlcjprZXktb2YtdGhlLWNsaW5pYw=="));  // user:key-of-the-clinic
  EXPECT_TRUE(keyed("basic   a2V5LW9mLXRoZS1jbGluaWM6"));        // key-of-the-clinic:
  EXPECT_TRUE(keyed("BASIC a2V5LW9mLXRoZS1jbGluaWM6"));
  EXPECT_TRUE(of("/", {{"Proxy-Authorization", "Basic a2V5LW9mLXRoZS1jbGluaWM6"}}).sensitive);
  EXPECT_FALSE(keyed("Basic dXNlcjpvdGhlcg=="));  // user:other
  EXPECT_FALSE(keyed("Basic !!!"));
  EXPECT_TRUE(egress_hit(
      rules, "POST / HTTP/1.1\r\nAuthorization: Basic a2V5LW9mLXRoZS1jbGluaWM6\r\n\r\n", "", ""));
  EXPECT_FALSE(egress_hit(rules, "POST / HTTP/1.1\r\nAuthorization: Basic dXNlcjpvdGhlcg==\r\n\r\n",
                          "", ""));
}

TEST_F(Classify, PatternsSeeThroughJsonEscapesFormsAndCompression) {
  auto hit = [&](std::string_view body, std::vector<HeaderView> h = {}) {
    return of("/v1/chat/completions", h, body).sensitive;
  };
  EXPECT_TRUE(hit(R"({"messages":[{"content":"SSN 123-45-6789"}]})"));
  EXPECT_TRUE(hit(R"({"messages":[{"content":"SSN 123\u002d45\u002d6789"}]})"));
  EXPECT_TRUE(hit(R"({"x":"\u0031\u0032\u0033-45-6789"})"));
  EXPECT_TRUE(hit(R"({"123-45-6789":1})"));  // keys too
  EXPECT_TRUE(hit("q=123%2D45%2D6789"));
  EXPECT_TRUE(of("/v1/chat/completions?ssn=123-45-6789").sensitive);
  EXPECT_TRUE(of("/v1/chat/completions?ssn=123%2d45%2d6789").sensitive);
  std::string body = R"({"content":"123-45-6789"})";
  EXPECT_TRUE(hit(compress(body, 15 + 16), {{"Content-Encoding", "gzip"}}));
  EXPECT_TRUE(hit(compress(body, 15), {{"Content-Encoding", "deflate"}}));
  EXPECT_TRUE(hit(compress(body, -15), {{"Content-Encoding", "Deflate"}}));
  EXPECT_TRUE(hit(compress(compress(body, 15 + 16), 15), {{"Content-Encoding", "gzip, deflate"}}));
  // A body the gateway cannot read is sensitive while any pattern is configured.
  auto v = of("/v1/chat/completions", {{"Content-Encoding", "br"}}, "\x1b\x02\x00");
  EXPECT_TRUE(v.sensitive);
  EXPECT_THAT(v.rule, HasSubstr("cannot read"));
  EXPECT_TRUE(hit("not gzip at all", {{"Content-Encoding", "gzip"}}));
  // A gzip bomb past max_body is unreadable, not decoded whole.
  rules.max_body_bytes = 1000;
  EXPECT_TRUE(hit(compress(std::string(100000, 'a'), 15 + 16), {{"Content-Encoding", "gzip"}}));
  EXPECT_FALSE(hit(R"({"content":"call 555-1234"})"));
  EXPECT_FALSE(hit(compress("hello", 15 + 16), {{"Content-Encoding", "gzip"}}));
  rules.patterns.clear();
  EXPECT_FALSE(hit("\x1b\x02", {{"Content-Encoding", "br"}}));  // nothing to look for
}

// Found by the privacy suite: each of these reached the cloud with the SSN.
TEST_F(Classify, EscapesCountInAnyDocumentAndEveryGzipMember) {
  auto hit = [&](std::string_view body, std::vector<HeaderView> h = {}) {
    return of("/v1/chat/completions", h, body).sensitive;
  };
  // Not valid JSON, or JSON whose parsed form keeps only the last duplicate: a lenient or
  // first-wins upstream still reads the SSN.
  EXPECT_TRUE(hit(R"({"p":"123\u002d45\u002d6789","p":"nothing"})"));
  EXPECT_TRUE(hit(R"({"p":"\u0031\u00323-45-6789",})"));
  EXPECT_TRUE(hit(R"({"p":"123\u002D45\u002D6789")"));
  EXPECT_TRUE(hit(R"(["x\n123\u002d45-6789\t"])"));
  EXPECT_FALSE(hit(R"({"p":"123\\u002d45\\u002d6789"})"));  // escaped backslashes: no dash
  EXPECT_FALSE(hit(R"({"p":"\u00zz 123\u002d45"})"));
  // Two gzip members: gzip -d and most servers decode both.
  std::string two = compress("hello", 15 + 16) + compress(R"({"p":"123-45-6789"})", 15 + 16);
  EXPECT_TRUE(hit(two, {{"Content-Encoding", "gzip"}}));
  EXPECT_TRUE(egress_hit(rules, "POST / HTTP/1.1\r\n\r\n", two, "gzip"));
  // Bytes after the last member cannot be read: sensitive, not ignored.
  EXPECT_TRUE(hit(compress("hello", 15 + 16) + "123-45", {{"Content-Encoding", "gzip"}}));
  EXPECT_TRUE(hit(compress("hello", -15) + "junk", {{"Content-Encoding", "deflate"}}));
  EXPECT_FALSE(
      hit(compress("hello", 15 + 16) + compress("world", 15 + 16), {{"Content-Encoding", "gzip"}}));
}

// A gzip body sent without Content-Encoding is still gzip to an upstream that sniffs it.
TEST_F(Classify, AGzipBodyWithoutContentEncodingIsReadAsGzip) {
  auto hit = [&](std::string_view body) { return of("/v1/chat/completions", {}, body).sensitive; };
  EXPECT_TRUE(hit(compress(R"({"p":"123-45-6789"})", 15 + 16)));
  EXPECT_FALSE(hit(compress("hello", 15 + 16)));
  EXPECT_TRUE(hit(std::string("\x1f\x8b not gzip after all")));  // unreadable: fail closed
  EXPECT_TRUE(egress_hit(rules, "POST / HTTP/1.1\r\n\r\n", compress("123-45-6789", 15 + 16), ""));
}

TEST_F(Classify, EgressSeesTheBytesAsSent) {
  EXPECT_TRUE(egress_hit(rules, "POST / HTTP/1.1\r\n\r\n", R"({"a":"123-45-6789"})", ""));
  EXPECT_TRUE(egress_hit(rules, "POST / HTTP/1.1\r\n\r\n", R"({"a":"123\u002d45-6789"})", ""));
  EXPECT_TRUE(egress_hit(rules, "GET /?q=123-45-6789 HTTP/1.1\r\n\r\n", "", ""));
  EXPECT_TRUE(egress_hit(rules, "POST / HTTP/1.1\r\n\r\n",
                         compress(R"({"a":"123-45-6789"})", 15 + 16), "gzip"));
  EXPECT_FALSE(egress_hit(rules, "POST / HTTP/1.1\r\n\r\n", R"({"a":"hello"})", ""));
}

}  // namespace
}  // namespace hylab::gateway
