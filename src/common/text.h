// Small text helpers shared by every module: edit distance for "did you mean"
// suggestions, case folding, joining. Pure functions: any thread.
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

}  // namespace hylab
