// Pure text rules of the gateway: path globs and content patterns for the privacy rules,
// Retry-After, and finding `usage` in an OpenAI-style answer. No I/O; any thread.
#pragma once

#include <string_view>

namespace hylab::gateway {

// '*' matches any run of characters (also '/'); everything else matches literally.
bool glob_match(std::string_view pattern, std::string_view text);

// Whether `text` contains `pattern`, case-insensitively, where '#' matches one digit
// ("###-##-####" finds a US social security number).
bool contains_pattern(std::string_view text, std::string_view pattern);

// Retry-After in seconds: a number; an HTTP date counts as 5 s.
double retry_after_seconds(std::string_view value);

// The text of the last `"usage": {...}` object in a JSON document, or empty.
std::string_view usage_object(std::string_view json);

}  // namespace hylab::gateway
