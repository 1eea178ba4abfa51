#include "common/text.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace hylab {
namespace {

using ::testing::HasSubstr;

TEST(Utf8, WellFormedTextIsValid) {
  EXPECT_TRUE(valid_utf8(""));
  EXPECT_TRUE(valid_utf8("plain ascii"));
  EXPECT_TRUE(valid_utf8("caf\xc3\xa9"));                   // U+00E9
  EXPECT_TRUE(valid_utf8("\xe2\x82\xac"));                  // U+20AC
  EXPECT_TRUE(valid_utf8("\xed\x9f\xbf"));                  // U+D7FF, just below the surrogates
  EXPECT_TRUE(valid_utf8("\xee\x80\x80"));                  // U+E000, just above them
  EXPECT_TRUE(valid_utf8("\xf0\x9f\x98\x80"));              // U+1F600
  EXPECT_TRUE(valid_utf8("\xf4\x8f\xbf\xbf"));              // U+10FFFF, the last code point
  EXPECT_TRUE(valid_utf8(std::string("nul\0inside", 10)));  // valid UTF-8, if not text
}

TEST(Utf8, OverlongEncodingsAreInvalid) {
  EXPECT_FALSE(valid_utf8("\xc0\xaf"));  // '/' in two bytes
  EXPECT_FALSE(valid_utf8("\xc1\xbf"));
  EXPECT_FALSE(valid_utf8("\xe0\x80\xaf"));      // '/' in three
  EXPECT_FALSE(valid_utf8("\xe0\x9f\xbf"));      // U+07FF in three
  EXPECT_FALSE(valid_utf8("\xf0\x80\x80\xaf"));  // '/' in four
  EXPECT_FALSE(valid_utf8("\xf0\x8f\xbf\xbf"));  // U+FFFF in four
  EXPECT_FALSE(valid_utf8("\xc0\x80"));          // Java's NUL
}

TEST(Utf8, SurrogatesAreInvalid) {
  EXPECT_FALSE(valid_utf8("\xed\xa0\x80"));              // U+D800
  EXPECT_FALSE(valid_utf8("\xed\xbf\xbf"));              // U+DFFF
  EXPECT_FALSE(valid_utf8("\xed\xa0\xbd\xed\xb8\x80"));  // a CESU-8 pair for U+1F600
}

TEST(Utf8, CodePointsPastTheLastAreInvalid) {
  EXPECT_FALSE(valid_utf8("\xf4\x90\x80\x80"));  // U+110000
  EXPECT_FALSE(valid_utf8("\xf5\x80\x80\x80"));
  EXPECT_FALSE(valid_utf8("\xf8\x88\x80\x80\x80"));  // the old five-byte form
  EXPECT_FALSE(valid_utf8("\xff"));
  EXPECT_FALSE(valid_utf8("\xfe"));
}

TEST(Utf8, TruncatedAndStraySequencesAreInvalid) {
  EXPECT_FALSE(valid_utf8("\xc3"));
  EXPECT_FALSE(valid_utf8("\xe2\x82"));
  EXPECT_FALSE(valid_utf8("\xf0\x9f\x98"));
  EXPECT_FALSE(valid_utf8("ab\xe2\x82z"));  // cut short by an ASCII byte
  EXPECT_FALSE(valid_utf8("\x80"));         // a continuation byte alone
  EXPECT_FALSE(valid_utf8("\xc3\xa9\xa9"));
  EXPECT_EQ(first_invalid_utf8("ok\xc3\xa9\xff"), 4u);
  EXPECT_EQ(first_invalid_utf8("fine"), std::nullopt);
}

TEST(TextFault, NamesTheFirstBadByteAndWhere) {
  auto f = find_text_fault("ab\xff", false);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->offset, 2u);
  EXPECT_EQ(f->message, "byte 0xff is not valid UTF-8");
  EXPECT_EQ(find_text_fault("caf\xc3\xa9 \xf0\x9f\x98\x80", false), std::nullopt);
}

TEST(TextFault, C0ControlsDelAndC1ControlsAreRefused) {
  auto esc = find_text_fault("red \x1b[31m", false);
  ASSERT_TRUE(esc);
  EXPECT_EQ(esc->offset, 4u);
  EXPECT_EQ(esc->message, "control character U+001B (ESC)");
  EXPECT_THAT(find_text_fault(std::string("a\0b", 3), false)->message, HasSubstr("U+0000 (NUL)"));
  EXPECT_THAT(find_text_fault("a\rb", true)->message, HasSubstr("U+000D (CR)"));
  EXPECT_THAT(find_text_fault("a\x7f", false)->message, HasSubstr("U+007F (DEL)"));
  // C1: U+0085 (NEL) and U+009B (CSI, the one-byte ESC [ of 8-bit terminals).
  EXPECT_THAT(find_text_fault("a\xc2\x85", false)->message, HasSubstr("U+0085 (C1)"));
  auto csi = find_text_fault(
      "x\xc2\x9b"
      "2J",
      false);
  ASSERT_TRUE(csi);
  EXPECT_EQ(csi->offset, 1u);
  EXPECT_EQ(csi->message, "control character U+009B (C1)");
  // U+00A0 is the first character after C1: text.
  EXPECT_EQ(find_text_fault("\xc2\xa0", false), std::nullopt);
}

TEST(TextFault, TabAndNewlineOnlyWhereTextMayHaveLines) {
  EXPECT_EQ(find_text_fault("echo a\n\techo b\n", true), std::nullopt);
  EXPECT_THAT(find_text_fault("two\nlines", false)->message, HasSubstr("U+000A (LF)"));
  EXPECT_THAT(find_text_fault("a\tb", false)->message, HasSubstr("U+0009 (TAB)"));
  EXPECT_THAT(find_text_fault("echo\n\x1b]0;title\x07", true)->message, HasSubstr("ESC"));
}

TEST(Escape, InvalidBytesBecomeHexAndValidTextStays) {
  EXPECT_EQ(escape_invalid_utf8("caf\xc3\xa9"), "caf\xc3\xa9");
  EXPECT_EQ(escape_invalid_utf8("a\xff"
                                "b"),
            "a\\xffb");
  EXPECT_EQ(escape_invalid_utf8("\xed\xa0\x80"), "\\xed\\xa0\\x80");
  EXPECT_EQ(escape_invalid_utf8("\xe2\x82"), "\\xe2\\x82");
  // Controls are valid UTF-8: JSON escapes them itself.
  EXPECT_EQ(escape_invalid_utf8("\x1b[2J"), "\x1b[2J");
  EXPECT_TRUE(valid_utf8(escape_invalid_utf8("\xc0\xaf\xf4\x90\x80\x80\x80")));
}

TEST(Escape, PrintableShowsWhatATerminalWouldObey) {
  EXPECT_EQ(printable("plain caf\xc3\xa9"), "plain caf\xc3\xa9");
  EXPECT_EQ(printable("\x1b[2Jgone"), "\\x1b[2Jgone");
  EXPECT_EQ(printable("a\nb\tc\x7f"), "a\\x0ab\\x09c\\x7f");
  EXPECT_EQ(printable("\xc2\x9b"
                      "31m"),
            "\\u009b31m");
  EXPECT_EQ(printable("bad\xff"), "bad\\xff");
  // Once is enough: the output is printable already.
  EXPECT_EQ(printable(printable("\x1b\xff\xc2\x85")), printable("\x1b\xff\xc2\x85"));
  EXPECT_EQ(find_text_fault(printable("\x1b\n\xff\xc2\x85\x7f"), false), std::nullopt);
}

}  // namespace
}  // namespace hylab
