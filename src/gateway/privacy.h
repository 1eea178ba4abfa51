// Which requests never leave the lab, decided in one place and failing closed: every way of
// writing the same request is classified as the plainest spelling would be, and a request
// the gateway cannot read is sensitive where a content pattern could have matched it.
//
// - normalize_target(): the request target as the rules and the upstream see it (percent-
//   decoded unreserved characters, no dot segments, single slashes, absolute-form reduced to
//   its path), or a refusal (400) for targets that cannot be normalised safely: an encoded
//   '/' or '\', a raw '\', NUL, an invalid escape (Envoy's normalize_path, merge_slashes and
//   path_with_escaped_slashes_action: REJECT).
// - classify(): routes (case-insensitive; "P/*" covers P itself; ';' parameters ignored), the
//   marking header (every occurrence, a list; anything but public/internal is sensitive),
//   client keys (in any field, under any scheme or none), content patterns (raw bytes, the
//   text with its JSON escapes decoded, valid JSON or not, the decoded query, gzip (every
//   member) and deflate bodies). The caller passes trailer fields as fields too: a marking
//   or key sent there counts, though it is never forwarded.
// - egress_hit(): the second line of defence, run on the exact bytes about to go to a cloud
//   endpoint (patterns, and client keys in the head).
// Pure functions of their inputs, no I/O: any thread. A verdict names the rule, never the
// content that matched it.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hylab::gateway {

struct NormalizedTarget {
  std::string path;   // origin-form path, normalised; "/" at least
  std::string query;  // after '?', as sent (empty when none)
  // origin-form as it goes upstream: path, then '?' and the query when there is one
  std::string origin_form() const { return query.empty() ? path : path + "?" + query; }
};

// The normalised target, or the reason it is refused (a 400 answer).
std::optional<NormalizedTarget> normalize_target(std::string_view raw, std::string& why);

struct PrivacyRules {
  std::string marking_header = "X-Hylab-Data";
  std::vector<std::string> routes;
  std::vector<std::string> client_keys;  // the keys themselves (secrets: never logged)
  std::vector<std::string> patterns;     // '#' is a digit, case-insensitive
  std::size_t max_body_bytes = 1 << 20;  // the most a compressed body is decoded to
};

struct HeaderView {
  std::string_view name;
  std::string_view value;
};

struct RequestFacts {
  const NormalizedTarget* target = nullptr;
  std::vector<HeaderView> headers;  // every field as sent, in order
  std::string_view body;
};

struct Verdict {
  bool sensitive = false;
  std::string rule;  // what made it sensitive, e.g. "route /v1/embeddings"; never content
};

Verdict classify(const PrivacyRules& rules, const RequestFacts& req);

// Whether the bytes about to leave (the head and body as written, after any rewrite) hold a
// content pattern or a client key: the rule that matched, or nothing. `content_encoding` is the
// body's.
std::optional<std::string> egress_hit(const PrivacyRules& rules, std::string_view head,
                                      std::string_view body, std::string_view content_encoding);

// Whether a field name is the marking header, also spelled with '_' for '-' (some upstream
// frameworks read them as the same variable).
bool same_field_name(std::string_view a, std::string_view b);

}  // namespace hylab::gateway
