// llhttp's own request corpus (tests/data/llhttp/*.md, copied from nodejs/llhttp with its
// MIT LICENSE; see the README there) run against hylab's RequestReader with llhttp's strict
// expectations. Each test in those files is an ```http block (the bytes) and a ```log block
// (what llhttp's callbacks saw: messages, body spans, an error). The bytes are made exactly
// as llhttp's test runner (test/md-test.ts) makes them, and the outcome is held to this rule:
//
// - where llhttp reports an error, hylab refuses too, at or before the message llhttp
//   refused (or ends the connection before it, after a request with Connection: close);
// - where llhttp completes messages, hylab completes the same messages, ending at the same
//   offsets, with the same bodies, or refuses one of them, and every such refusal is in one
//   of the deliberate classes (testing::kDeliberateClasses, docs/http.md);
// - where llhttp refuses bytes that hylab, reading a head line by line, still waits on (a
//   line not ended yet), hylab refuses them once the head is closed with CRLF CRLF.
// - where llhttp stops parsing for an upgrade (CONNECT, Upgrade), hylab does not read the
//   bytes after that request as HTTP: it refuses the request or closes the connection.
//
// Most corpus requests have no Host, which llhttp does not require and hylab's servers do
// (RFC 9112 §3.2, as Node's server does): the comparison reads them with that one check off
// (Limits::require_host), and counts how many the servers' reader refuses for it alone.
//
// Tests of llhttp's lenient flags (type request-lenient-*) are run with strict expectations:
// their log is what llhttp saw with the flag on, so hylab, which has no lenient mode, must
// refuse them (or close the connection) before reading all of that log's messages as they
// were. llhttp's callback-driven skipBody mode has no counterpart and is skipped, counted.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/http1.h"
#include "http1_harness.h"

namespace hylab::http1 {
namespace {

using testing::End;
using testing::Outcome;

// ---- Reading the .md files as mdgator does -------------------------------------------

struct MdTest {
  std::string file;
  std::string location;  // file.md:line of the heading, 1-based
  std::string name;
  std::vector<std::string> http;  // contents of ```http blocks (with their last newline)
  std::vector<std::string> http_meta;
  std::vector<std::string> log;
};

std::vector<MdTest> read_md(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::vector<MdTest> tests;
  std::optional<std::string> meta;
  std::string file = path.filename().string();
  auto heading = [&](std::size_t line_index, std::string name) {
    MdTest t;
    t.file = file;
    t.location = file + ":" + std::to_string(line_index + 1);
    t.name = std::move(name);
    tests.push_back(std::move(t));
    meta.reset();
  };
  static const std::regex kMeta(R"(<!--\s+meta=(.*)\s+-->)");
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const std::string& l = lines[i];
    if (l.starts_with("```")) {
      std::string info = l.substr(3);
      std::string content;
      for (++i; i < lines.size() && !lines[i].starts_with("```"); ++i) content += lines[i] + "\n";
      if (tests.empty()) continue;
      auto& t = tests.back();
      if (info == "http") {
        t.http.push_back(content);
        t.http_meta.push_back(meta.value_or(""));
      } else if (info == "log") {
        t.log.push_back(content);
      }
      meta.reset();
    } else if (l.starts_with("#")) {
      heading(i, l.substr(l.find_first_not_of('#')));
    } else if (!l.empty() && i > 0 && !lines[i - 1].empty() &&
               (l.find_first_not_of('=') == std::string::npos ||
                l.find_first_not_of('-') == std::string::npos)) {
      heading(i - 1, lines[i - 1]);  // a setext heading: its text is the line above
    } else {
      std::smatch m;
      if (std::regex_search(l, m, kMeta)) meta = m[1].str();
    }
  }
  std::erase_if(tests, [](const MdTest& t) { return t.http.empty() && t.log.empty(); });
  return tests;
}

// ---- The bytes, as test/md-test.ts makes them ------------------------------------------
// It works on a JavaScript string (code points) and hands it to the test binary as an argv
// entry, so what the parser sees is that string encoded as UTF-8, cut at a NUL.

std::u32string decode_utf8(std::string_view s) {
  std::u32string out;
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    int n = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
    char32_t cp = n == 1 ? c : c & (0xff >> (n + 1));
    for (int k = 1; k < n && i + k < s.size(); ++k) cp = (cp << 6) | (s[i + k] & 0x3f);
    out.push_back(cp);
    i += n;
  }
  return out;
}

std::string encode_utf8(std::u32string_view s) {
  std::string out;
  for (char32_t cp : s) {
    if (cp == 0) break;  // argv ends at a NUL
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xc0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xe0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else {
      out.push_back(static_cast<char>(0xf0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    }
  }
  return out;
}

bool is_hex(char32_t c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// One global replace of `\` followed by what `match` accepts at position i (returning its
// length, 0 for no match) by what `with` makes of the matched text after the backslash.
template <class Match, class With>
std::u32string replace_escape(const std::u32string& s, Match match, With with) {
  std::u32string out;
  for (std::size_t i = 0; i < s.size();) {
    std::size_t n = s[i] == U'\\' ? match(s, i + 1) : 0;
    if (n == 0) {
      out.push_back(s[i++]);
      continue;
    }
    out += with(std::u32string_view(s).substr(i + 1, n));
    i += 1 + n;
  }
  return out;
}

std::string wire_bytes(const std::string& block) {
  std::u32string s = decode_utf8(block);
  // Remove the trailing newline.
  if (!s.empty() && s.back() == U'\n') s.pop_back();
  // Remove escaped newlines: \ followed by CRLF, CR or LF.
  s = replace_escape(
      s,
      [](const std::u32string& t, std::size_t i) -> std::size_t {
        if (i >= t.size()) return 0;
        if (t[i] == U'\r') return i + 1 < t.size() && t[i + 1] == U'\n' ? 2 : 1;
        return t[i] == U'\n' ? 1 : 0;
      },
      [](std::u32string_view) { return std::u32string(); });
  // Normalise every newline to CRLF.
  std::u32string crlf;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == U'\r' || s[i] == U'\n') {
      if (s[i] == U'\r' && i + 1 < s.size() && s[i + 1] == U'\n') ++i;
      crlf += U"\r\n";
    } else {
      crlf.push_back(s[i]);
    }
  }
  s = crlf;
  // \r \n \t \f, each in its own pass, in that order.
  for (auto [letter, code] : {std::pair{U'r', U'\r'}, std::pair{U'n', U'\n'},
                              std::pair{U't', U'\t'}, std::pair{U'f', U'\f'}}) {
    s = replace_escape(
        s,
        [letter](const std::u32string& t, std::size_t i) -> std::size_t {
          return i < t.size() && t[i] == letter ? 1 : 0;
        },
        [code](std::u32string_view) { return std::u32string(1, code); });
  }
  // \xHH... (as many hex digits as follow).
  s = replace_escape(
      s,
      [](const std::u32string& t, std::size_t i) -> std::size_t {
        if (i >= t.size() || t[i] != U'x') return 0;
        std::size_t n = 0;
        while (i + 1 + n < t.size() && is_hex(t[i + 1 + n])) ++n;
        return n == 0 ? 0 : n + 1;
      },
      [](std::u32string_view m) {
        char32_t v = 0;
        for (char32_t c : m.substr(1)) {
          v = v * 16 + (c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
        }
        return std::u32string(1, v & 0xffff);  // String.fromCharCode keeps 16 bits
      });
  // \NNN octal, one to three digits.
  s = replace_escape(
      s,
      [](const std::u32string& t, std::size_t i) -> std::size_t {
        std::size_t n = 0;
        while (n < 3 && i + n < t.size() && t[i + n] >= U'0' && t[i + n] <= U'7') ++n;
        return n;
      },
      [](std::u32string_view m) {
        char32_t v = 0;
        for (char32_t c : m) v = v * 8 + (c - U'0');
        return std::u32string(1, v);
      });
  return encode_utf8(s);
}

// ---- What llhttp saw, from the log -----------------------------------------------------

struct ExpectedMessage {
  std::size_t end = 0;
  std::string body;
};

enum class LlhttpEnd {
  kNone,     // no error: the bytes ended between messages or inside one
  kError,    // a parse error
  kClosed,   // data after a message with Connection: close (HPE_CLOSED_CONNECTION)
  kUpgrade,  // llhttp stopped after a CONNECT or Upgrade request: the rest is not HTTP
};

struct Expected {
  std::vector<ExpectedMessage> messages;
  LlhttpEnd end = LlhttpEnd::kNone;
  bool in_message = false;  // a message began and did not complete
  std::string error;
  std::optional<int> finish;  // llhttp_finish()'s result, for request-finish tests
};

Expected read_log(const std::string& log) {
  Expected e;
  std::istringstream in(log);
  static const std::regex kLine(R"(^off=(\d+|NULL) (.*)$)");
  static const std::regex kError(R"(^error code=(\d+) reason=\"(.*)\"$)");
  std::string body;
  for (std::string line; std::getline(in, line);) {
    std::smatch m;
    if (!std::regex_match(line, m, kLine)) continue;
    std::size_t off = m[1] == "NULL" ? 0 : std::stoul(m[1]);
    std::string rest = m[2];
    std::smatch em;
    if (rest == "message begin") {
      body.clear();
      e.in_message = true;
    } else if (rest == "message complete") {
      e.messages.push_back({off, body});
      e.in_message = false;
    } else if (rest.find(" span[body]=") != std::string::npos) {
      std::string v = rest.substr(rest.find("]=") + 2);
      body += v == "cr" ? "\r" : v == "lf" ? "\n" : v.substr(1, v.size() - 2);
    } else if (std::regex_match(rest, em, kError)) {
      int code = std::stoi(em[1]);
      e.error = "code=" + em[1].str() + " " + em[2].str();
      // 22 and 23: HPE_PAUSED_UPGRADE and HPE_PAUSED_H2_UPGRADE; 5: HPE_CLOSED_CONNECTION.
      e.end = code == 22 || code == 23 ? LlhttpEnd::kUpgrade
              : code == 5              ? LlhttpEnd::kClosed
                                       : LlhttpEnd::kError;
    } else if (rest.starts_with("finish=")) {
      e.finish = std::stoi(rest.substr(7));
    }
  }
  return e;
}

std::optional<std::string> meta_string(const std::string& meta, const std::string& key) {
  std::smatch m;
  std::regex re("\"" + key + "\"\\s*:\\s*\"([^\"]*)\"");
  if (std::regex_search(meta, m, re)) return m[1].str();
  return std::nullopt;
}

bool meta_true(const std::string& meta, const std::string& key) {
  return std::regex_search(meta, std::regex("\"" + key + "\"\\s*:\\s*true"));
}

std::string printable(std::string_view s) {
  std::string out;
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (c == '\r') {
      out += "\\r";
    } else if (c == '\n') {
      out += "\\n\n";
    } else if (u < 0x20 || u >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::vector<std::filesystem::path> corpus_files() {
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(
           std::filesystem::path(HYLAB_SOURCE_DIR) / "tests" / "data" / "llhttp")) {
    if (entry.path().extension() == ".md") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

// The corpus bytes for one heading, exactly as llhttp's runner makes them, checked against
// the runner's own decoding on a few known cases.
TEST(LlhttpCorpus, BytesAreMadeAsLlhttpsRunnerMakesThem) {
  EXPECT_EQ(wire_bytes("GET / HTTP/1.1\nHost: a\n\n\n"), "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(wire_bytes("A\\r\\nB\\\nC\n"), "A\r\nBC");
  EXPECT_EQ(wire_bytes("Foo\\01\\test\n"), std::string("Foo\x01\test"));
  EXPECT_EQ(wire_bytes("\\xffV\n"), "\xc3\xbfV");  // U+00FF as UTF-8, as argv carries it
  EXPECT_EQ(wire_bytes("a\\033\\065\\325e\n"),
            "a\x1b"
            "5\xc3\x95"
            "e");
  EXPECT_EQ(wire_bytes("a\\0b\n"), "a");  // a NUL ends an argv string
}

TEST(LlhttpCorpus, StrictRequestTestsAgreeWithLlhttp) {
  auto files = corpus_files();
  ASSERT_GE(files.size(), 7u) << "tests/data/llhttp is missing its .md files";
  Limits no_host_check;
  no_host_check.require_host = false;

  int cases = 0;
  int both_accept = 0;
  int both_reject = 0;
  int refused_when_closed = 0;
  int llhttp_upgrade = 0;
  int no_host = 0;
  int lenient = 0;
  std::map<std::string, int> skipped;     // by reason
  std::map<std::string, int> hylab_only;  // by deliberate class
  std::set<std::string> files_run;

  for (const auto& path : files) {
    for (const MdTest& t : read_md(path)) {
      if (t.http.size() != 1 || t.log.size() != 1) {
        skipped["not one http block and one log block"]++;
        continue;
      }
      std::string type = meta_string(t.http_meta[0], "type").value_or("");
      bool is_lenient = type.starts_with("request-lenient-");
      if (type != "request" && type != "request-finish" && !is_lenient) {
        skipped[type.empty() ? std::string("no type") : "type " + type]++;
        continue;
      }
      if (meta_true(t.http_meta[0], "skipBody")) {
        skipped["skipBody (llhttp's callback declares the body absent)"]++;
        continue;
      }
      ASSERT_EQ(t.http[0].find("${"), std::string::npos)
          << t.location << ": inline JavaScript in a block is not supported";
      ++cases;
      files_run.insert(t.file);
      std::string wire = wire_bytes(t.http[0]);
      Expected e = read_log(t.log[0]);
      bool finish = type == "request-finish";
      Outcome h = testing::read_connection(wire, 0, finish, no_host_check);
      Outcome h1 = testing::read_connection(wire, 1, finish, no_host_check);
      Outcome served = testing::read_connection(wire, 0, finish);
      std::string where =
          t.location + " (" + t.name + ")\n--- bytes:\n" + printable(wire) + "\n--- llhttp" +
          (is_lenient ? " (" + type + ")" : std::string()) + ": " +
          std::to_string(e.messages.size()) + " message(s), " +
          (e.error.empty() ? "no error" : e.error) +
          "\n--- hylab: " + std::to_string(h.messages.size()) + " message(s), " +
          testing::end_name(h.end) +
          (h.end == End::kFailed ? " " + std::to_string(h.status) + " " + h.reason : std::string());
      EXPECT_TRUE(testing::same_outcome(h, h1))
          << where << "\nread one byte at a time, hylab frames it otherwise";
      if (!testing::same_outcome(h, served)) {
        // Requiring Host may only refuse earlier, for that reason.
        EXPECT_EQ(served.reason, "an HTTP/1.1 request without Host") << where;
        ++no_host;
      }
      bool refused = h.end == End::kFailed || h.end == End::kClosed;
      std::size_t k = e.messages.size();
      std::size_t j = h.messages.size();

      if (is_lenient) {
        // Strict expectations: the flag was needed, so hylab stops before reading every
        // message of the log as llhttp did with it.
        ++lenient;
        bool same_messages = j >= k;
        for (std::size_t i = 0; same_messages && i < k; ++i) {
          same_messages =
              h.messages[i].end == e.messages[i].end && h.messages[i].body == e.messages[i].body;
        }
        bool read_all_as_lenient = same_messages && j == k && !refused && !e.in_message;
        EXPECT_FALSE(read_all_as_lenient) << where << "\nhylab reads it as lenient llhttp does";
        EXPECT_FALSE(same_messages && j > k) << where << "\nhylab read more than lenient llhttp";
        continue;
      }

      bool framed_same = true;
      for (std::size_t i = 0; i < std::min(j, k); ++i) {
        if (h.messages[i].end != e.messages[i].end || h.messages[i].body != e.messages[i].body) {
          framed_same = false;
          ADD_FAILURE() << where << "\nmessage " << i + 1 << " framed otherwise: hylab ends it at "
                        << h.messages[i].end << " with body \"" << printable(h.messages[i].body)
                        << "\", llhttp at " << e.messages[i].end << " with body \""
                        << printable(e.messages[i].body) << "\"";
        }
      }
      if (!framed_same) continue;
      if (j > k) {
        ADD_FAILURE() << where << "\nhylab read more requests than llhttp";
        continue;
      }
      bool llhttp_stops = e.end != LlhttpEnd::kNone;
      if (j == k && llhttp_stops) {
        // Where llhttp refuses (or stops at an upgrade) after k messages, hylab must not go
        // on reading past them as HTTP.
        if (refused) {
          ++(e.end == LlhttpEnd::kUpgrade ? llhttp_upgrade : both_reject);
          continue;
        }
        if (h.end == End::kIncomplete && e.end == LlhttpEnd::kError) {
          Outcome closed = testing::read_connection(wire + "\r\n\r\n", 0, true, no_host_check);
          if (closed.messages.size() == k && closed.end == End::kFailed) {
            ++refused_when_closed;
            continue;
          }
        }
        ADD_FAILURE() << where << "\nllhttp refuses (or stops at an upgrade), hylab does not";
        continue;
      }
      if (j == k && h.end != End::kFailed) {
        bool same_end = (h.end == End::kIncomplete) == e.in_message;
        if (!same_end && !(h.end == End::kClosed && !e.in_message)) {
          ADD_FAILURE() << where << "\nthe bytes end " << (e.in_message ? "inside" : "between")
                        << " requests for llhttp, " << testing::end_name(h.end) << " for hylab";
          continue;
        }
        if (finish && e.finish) {
          // llhttp_finish(): 0 safe (between messages), 2 unsafe (inside one).
          if (h.eof_failed != (*e.finish == 2)) {
            ADD_FAILURE() << where << "\nllhttp_finish() gave " << *e.finish << ", hylab's eof() "
                          << (h.eof_failed ? "failed" : "was clean");
            continue;
          }
        }
        ++both_accept;
        continue;
      }
      // hylab refused a request llhttp read to its end (or was still reading without fault):
      // a deliberate difference only where its reason is in one of the documented classes.
      if (h.end != End::kFailed) {
        ADD_FAILURE() << where << "\nhylab stopped short of llhttp without refusing";
        continue;
      }
      const char* cls = testing::deliberate_class(h.status, h.reason);
      if (cls == nullptr) {
        ADD_FAILURE()
            << where
            << "\nhylab refuses what llhttp accepts, in no documented class (docs/http.md)";
        continue;
      }
      hylab_only[cls]++;
    }
  }
  for (const char* f : {"transfer-encoding.md", "content-length.md", "invalid.md", "uri.md",
                        "connection.md", "method.md", "pipelining.md"}) {
    EXPECT_TRUE(files_run.count(f)) << f << " was not run";
  }

  int deliberate = 0;
  for (const auto& [cls, n] : hylab_only) deliberate += n;
  int skipped_total = 0;
  for (const auto& [why, n] : skipped) skipped_total += n;
  std::ostringstream summary;
  summary << "llhttp corpus: " << cases + skipped_total << " request cases from " << files.size()
          << " files, " << cases << " run, " << skipped_total << " skipped\n  " << cases - lenient
          << " strict: " << both_accept << " accepted by both, " << both_reject
          << " refused by both, " << refused_when_closed
          << " refused by hylab once the head is closed (llhttp refuses mid-line), "
          << llhttp_upgrade << " upgrades (llhttp stops, hylab refuses or closes), " << deliberate
          << " refused by hylab only (deliberate):\n";
  for (const auto& [cls, n] : hylab_only) summary << "    " << n << "  " << cls << "\n";
  summary << "  " << lenient << " lenient-flag tests run strict: hylab refuses all\n  " << no_host
          << " of all run are refused by the servers' reader for want of Host alone\n"
          << "skipped:\n";
  for (const auto& [why, n] : skipped) summary << "  " << n << "  " << why << "\n";
  std::cout << summary.str();
  EXPECT_GE(cases, 100);
}

}  // namespace
}  // namespace hylab::http1
