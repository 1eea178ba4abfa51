// The small XML extractor used for S3's answers: xml_text and xml_blocks on a real
// ListObjectsV2 answer (entities in keys, IsTruncated, NextContinuationToken, tags that share a
// prefix such as Key/KeyCount), an S3 error body, empty elements, absent tags, entity decoding
// and the xml_escape / xml_unescape round trip.
#include "storage/xml.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

namespace hylab::storage {
namespace {

// As S3 (and MinIO) answer GET /bucket?list-type=2&prefix=datasets/.
constexpr std::string_view kListing = R"(<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>lab-data</Name>
  <Prefix>datasets/</Prefix>
  <KeyCount>3</KeyCount>
  <MaxKeys>3</MaxKeys>
  <IsTruncated>true</IsTruncated>
  <ContinuationToken>cHJldmlvdXM=</ContinuationToken>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
  <Contents>
    <Key>datasets/a&amp;b &quot;v1&quot; &#x4E2D;&#25991;.parquet</Key>
    <LastModified>2024-05-01T12:00:00.000Z</LastModified>
    <ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag>
    <Size>1048576</Size>
    <StorageClass>STANDARD</StorageClass>
  </Contents>
  <Contents>
    <Key>datasets/b.csv</Key>
    <LastModified>2024-05-02T08:30:00.000Z</LastModified>
    <ETag>"d41d8cd98f00b204e9800998ecf8427e-2"</ETag>
    <Size>0</Size>
    <Owner><ID>abc</ID><DisplayName>lab</DisplayName></Owner>
    <StorageClass>STANDARD</StorageClass>
  </Contents>
  <Contents><Key>datasets/c &lt;raw&gt; &apos;x&apos;.bin</Key><Size>7</Size><ETag/></Contents>
</ListBucketResult>)";

TEST(XmlListing, TopLevelFields) {
  EXPECT_EQ(xml_text(kListing, "Name"), "lab-data");
  EXPECT_EQ(xml_text(kListing, "Prefix"), "datasets/");
  EXPECT_EQ(xml_text(kListing, "KeyCount"), "3");
  EXPECT_EQ(xml_text(kListing, "IsTruncated"), "true");
  EXPECT_EQ(xml_text(kListing, "ContinuationToken"), "cHJldmlvdXM=");
  EXPECT_EQ(xml_text(kListing, "NextContinuationToken"),
            "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
}

TEST(XmlListing, ContentsBlocksInOrderWithDecodedKeys) {
  std::vector<std::string_view> blocks = xml_blocks(kListing, "Contents");
  ASSERT_EQ(blocks.size(), 3u);
  // '&amp;', '&quot;', a hexadecimal and a decimal reference (U+4E2D U+6587, UTF-8).
  EXPECT_EQ(xml_text(blocks[0], "Key"), "datasets/a&b \"v1\" \xE4\xB8\xAD\xE6\x96\x87.parquet");
  EXPECT_EQ(xml_text(blocks[0], "Size"), "1048576");
  EXPECT_EQ(xml_text(blocks[0], "ETag"), "\"9b2cf535f27731c974343645a3985328\"");
  EXPECT_EQ(xml_text(blocks[0], "LastModified"), "2024-05-01T12:00:00.000Z");
  EXPECT_EQ(xml_text(blocks[1], "Key"), "datasets/b.csv");
  EXPECT_EQ(xml_text(blocks[1], "Size"), "0");
  EXPECT_EQ(xml_text(blocks[1], "ETag"), "\"d41d8cd98f00b204e9800998ecf8427e-2\"");
  EXPECT_EQ(xml_text(blocks[1], "ID"), "abc");
  EXPECT_EQ(xml_text(blocks[2], "Key"), "datasets/c <raw> 'x'.bin");
  EXPECT_EQ(xml_text(blocks[2], "Size"), "7");
  EXPECT_EQ(xml_text(blocks[2], "ETag"), "");
  // Blocks are the raw inner text: entities are still encoded there.
  EXPECT_NE(blocks[0].find("a&amp;b"), std::string_view::npos);
  EXPECT_EQ(blocks[0].find("<Contents>"), std::string_view::npos);
  EXPECT_EQ(blocks[0].find("</Contents>"), std::string_view::npos);
}

TEST(XmlListing, KeyDoesNotMatchKeyCountNorAClosingTag) {
  // The first "<Key" in the listing is <KeyCount>; the first real <Key> is in Contents.
  EXPECT_EQ(xml_text(kListing, "Key"), "datasets/a&b \"v1\" \xE4\xB8\xAD\xE6\x96\x87.parquet");
  EXPECT_EQ(xml_text("<KeyCount>3</KeyCount>", "Key"), "");
  EXPECT_EQ(xml_text("</Key><Key>k</Key>", "Key"), "k");
  EXPECT_TRUE(xml_blocks("<KeyCount>3</KeyCount><Keys>x</Keys>", "Key").empty());
}

TEST(XmlListing, LastPageAndNoContents) {
  // On one line, as S3 sends it.
  constexpr std::string_view kEmpty =
      R"(<?xml version="1.0" encoding="UTF-8"?>)"
      "\n"
      R"(<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name>)"
      R"(<Prefix>nothing/</Prefix><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys>)"
      R"(<IsTruncated>false</IsTruncated></ListBucketResult>)";
  EXPECT_EQ(xml_text(kEmpty, "IsTruncated"), "false");
  EXPECT_EQ(xml_text(kEmpty, "NextContinuationToken"), "");
  EXPECT_TRUE(xml_blocks(kEmpty, "Contents").empty());
  EXPECT_EQ(xml_text(kEmpty, "Prefix"), "nothing/");
}

TEST(XmlError, S3ErrorBody) {
  constexpr std::string_view kError =
      R"(<?xml version="1.0" encoding="UTF-8"?>)"
      "\n"
      R"(<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message>)"
      R"(<Key>datasets/missing &amp; gone.bin</Key><RequestId>4442587FB7D0A2F9</RequestId>)"
      R"(<HostId>abc/def=</HostId></Error>)";
  EXPECT_EQ(xml_text(kError, "Code"), "NoSuchKey");
  EXPECT_EQ(xml_text(kError, "Message"), "The specified key does not exist.");
  EXPECT_EQ(xml_text(kError, "Key"), "datasets/missing & gone.bin");
  EXPECT_EQ(xml_text(kError, "RequestId"), "4442587FB7D0A2F9");
  EXPECT_EQ(xml_blocks(kError, "Error").size(), 1u);
  EXPECT_EQ(xml_text(kError, "UploadId"), "");
}

TEST(XmlError, MultipartAnswers) {
  constexpr std::string_view kInit =
      R"(<?xml version="1.0" encoding="UTF-8"?>)"
      "\n"
      R"(<InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">)"
      R"(<Bucket>b</Bucket><Key>big.bin</Key><UploadId>VXBsb2FkIElE.Zm9y-_~</UploadId>)"
      R"(</InitiateMultipartUploadResult>)";
  EXPECT_EQ(xml_text(kInit, "UploadId"), "VXBsb2FkIElE.Zm9y-_~");
  EXPECT_EQ(xml_text(kInit, "InitiateMultipartUploadResult").find("<Bucket>b</Bucket>"), 0u);
  // A 200 answer to CompleteMultipartUpload can still carry an error.
  constexpr std::string_view kDone =
      R"(<CompleteMultipartUploadResult>)"
      R"(<ETag>&quot;3858f62230ac3c915f300c664312c11f-9&quot;</ETag>)"
      R"(</CompleteMultipartUploadResult>)";
  EXPECT_EQ(xml_text(kDone, "ETag"), "\"3858f62230ac3c915f300c664312c11f-9\"");
  EXPECT_EQ(xml_text(kDone, "Code"), "");
}

TEST(XmlElements, EmptyElementsBothWays) {
  EXPECT_EQ(xml_text("<R><Prefix/><Name>n</Name></R>", "Prefix"), "");
  EXPECT_EQ(xml_text("<R><Prefix></Prefix><Name>n</Name></R>", "Prefix"), "");
  EXPECT_EQ(xml_text("<R><Prefix /><Name>n</Name></R>", "Prefix"), "");
  EXPECT_EQ(xml_text("<R><Prefix/><Name>n</Name></R>", "Name"), "n");
  // <Prefix/> must not swallow the text of a later <Prefix>...</Prefix>.
  auto blocks = xml_blocks("<P/><P>a</P><P></P><P>b</P>", "P");
  ASSERT_EQ(blocks.size(), 4u);
  EXPECT_EQ(blocks[0], "");
  EXPECT_EQ(blocks[1], "a");
  EXPECT_EQ(blocks[2], "");
  EXPECT_EQ(blocks[3], "b");
}

TEST(XmlElements, AttributesAndAbsentTags) {
  EXPECT_EQ(xml_text(R"(<Error xmlns="urn:x"><Code>SlowDown</Code></Error>)", "Code"), "SlowDown");
  EXPECT_EQ(xml_blocks(R"(<Error xmlns="urn:x"><Code>SlowDown</Code></Error>)", "Error").at(0),
            "<Code>SlowDown</Code>");
  EXPECT_EQ(xml_text("", "Code"), "");
  EXPECT_EQ(xml_text("<Code>x</Code>", "Missing"), "");
  EXPECT_EQ(xml_text("not xml at all", "Code"), "");
  EXPECT_EQ(xml_text("<Code>unterminated", "Code"), "");
  EXPECT_EQ(xml_text("<Code", "Code"), "");
  EXPECT_EQ(xml_text("<", "Code"), "");
  EXPECT_TRUE(xml_blocks("", "Contents").empty());
  EXPECT_TRUE(xml_blocks("<Contents>never closed", "Contents").empty());
}

TEST(XmlEntities, Decoding) {
  EXPECT_EQ(xml_unescape("&lt;a&gt; &amp;&amp; &quot;q&quot; &apos;s&apos;"), "<a> && \"q\" 's'");
  EXPECT_EQ(xml_unescape("&#65;&#x42;&#X43;"), "ABC");
  EXPECT_EQ(xml_unescape("&#xE9;"), "\xC3\xA9");             // U+00E9, 2 bytes
  EXPECT_EQ(xml_unescape("&#x4E2D;"), "\xE4\xB8\xAD");       // U+4E2D, 3 bytes
  EXPECT_EQ(xml_unescape("&#x1F600;"), "\xF0\x9F\x98\x80");  // U+1F600, 4 bytes
  EXPECT_EQ(xml_unescape("&#128512;"), "\xF0\x9F\x98\x80");  // the same in decimal
  EXPECT_EQ(xml_unescape("no entities"), "no entities");
  EXPECT_EQ(xml_unescape(""), "");
  // What is not an entity stays as it was.
  EXPECT_EQ(xml_unescape("&nbsp;x"), "&nbsp;x");
  EXPECT_EQ(xml_unescape("a & b"), "a & b");
  EXPECT_EQ(xml_unescape("trailing &"), "trailing &");
}

TEST(XmlEntities, EscapeRoundTrip) {
  EXPECT_EQ(xml_escape(R"(<a href="x">Tom & Jerry's</a>)"),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&apos;s&lt;/a&gt;");
  EXPECT_EQ(xml_escape("plain/key-1.bin"), "plain/key-1.bin");
  for (std::string s : {std::string("a&b<c>d\"e'f"), std::string("&amp; already"),
                        std::string("\xE4\xB8\xAD/\xF0\x9F\x98\x80 key"), std::string(""),
                        std::string("&&&;;;<<>>")}) {
    EXPECT_EQ(xml_unescape(xml_escape(s)), s) << s;
    // Inside an element, the escaped text comes back through xml_text.
    EXPECT_EQ(xml_text("<Key>" + xml_escape(s) + "</Key>", "Key"), s) << s;
  }
}

}  // namespace
}  // namespace hylab::storage
