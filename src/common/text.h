// Small text helpers shared by every module: edit distance for "did you mean"
// suggestions, case folding, joining, and the checks and escapes that keep text a person
// gave us (job names, scripts) from breaking a reader: a JSON parser that wants UTF-8, a
// terminal that obeys escape sequences. Pure functions: any thread.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace hylab {

// Levenshtein distance, case-insensitive.
std::size_t edit_distance(std::string_view a, std::string_view b);

// The closest candidate to `word` when it is close enough to be a likely typo
// (distance at most max(1, len/3)), else nothing.
std::optional<std::string> did_you_mean(std::string_view word,
                                        std::span<const std::string> candidates);
std::optional<std::string> did_you_mean(std::string_view word,
                                        std::span<const std::string_view> candidates);

std::string to_lower(std::string_view s);
bool iequals(std::string_view a, std::string_view b);
std::string join(std::span<const std::string> parts, std::string_view sep);
std::string trim(std::string_view s);

// Quotes a value for an error message, shortening it so a huge or binary input
// cannot flood the terminal.
std::string quote(std::string_view s);

// True when every byte of `s` belongs to a well-formed UTF-8 sequence (RFC 3629: no
// overlong forms, no surrogates U+D800-U+DFFF, nothing past U+10FFFF, none cut short).
bool valid_utf8(std::string_view s);
// The offset of the first byte that breaks that rule.
std::optional<std::size_t> first_invalid_utf8(std::string_view s);

// The first thing in `s` that makes it unfit to store and show again: a byte that is not
// valid UTF-8, or a control character (C0, DEL, C1 U+0080-U+009F). `multiline` allows tab
// and newline, which scripts and environment values need; no other control character is
// ever text.
struct TextFault {
  std::size_t offset = 0;  // bytes from the start of `s`
  std::string message;     // "byte 0xff is not valid UTF-8", "control character U+001B (ESC)"
};
std::optional<TextFault> find_text_fault(std::string_view s, bool multiline);

// `s` with each byte that is not valid UTF-8 written as the four characters \xNN, so a
// JSON document built from it is valid (Boost.JSON writes such bytes raw, and its own
// parser, like every strict one, then refuses the whole document). Valid text comes back
// unchanged: this is for text stored before it was checked.
std::string escape_invalid_utf8(std::string_view s);

// `s` as a terminal shows it literally, on one line: invalid bytes and C0/DEL controls as
// \xNN (ESC is \x1b, newline \x0a), C1 controls as \u0080..\u009f. For tables.
std::string printable(std::string_view s);

}  // namespace hylab
