// AWS Signature Version 4: canonical request, string to sign and signature, for the
// Authorization header and for presigned (query) URLs. Written here because libcurl 7.88's
// own SigV4 gets S3 wrong (no x-amz-content-sha256, unsorted and value-less query
// parameters). Checked against the official test vectors (tests/data/aws-sigv4) and against
// botocore for S3-style requests. Pure functions of their inputs: any thread.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hylab::storage {

struct Credentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // empty unless temporary credentials
  bool empty() const { return access_key_id.empty() || secret_access_key.empty(); }
};

using Pairs = std::vector<std::pair<std::string, std::string>>;

// "UNSIGNED-PAYLOAD": S3 accepts it in x-amz-content-sha256 instead of the body's hash.
inline constexpr std::string_view kUnsignedPayload = "UNSIGNED-PAYLOAD";

struct SignRequest {
  std::string method;  // "GET"
  // The path as it goes on the wire, percent-encoded (build it with uri_encode(key, false)).
  std::string path;
  Pairs query;    // decoded names and values; a value-less parameter (?uploads) has ""
  Pairs headers;  // as they will be sent; must include "host"
  // Hex SHA-256 of the body, or kUnsignedPayload. Empty means the hash of an empty body.
  std::string payload_sha256;
};

struct SignOptions {
  std::string region = "us-east-1";
  std::string service = "s3";
  std::chrono::system_clock::time_point time = std::chrono::system_clock::now();
  // Every service but S3 normalizes the path (. and .. segments, repeated slashes) and
  // encodes it a second time; S3 does neither.
  bool normalize_path = false;
  bool double_encode = false;
  // S3 requires x-amz-content-sha256 among the signed headers.
  bool content_sha256_header = true;
  int expires_seconds = 3600;  // presigned URLs only
};

struct Signed {
  std::string canonical_request;
  std::string string_to_sign;
  std::string signature;  // hex
  // Header signing: the headers to add to the request (x-amz-date, x-amz-content-sha256,
  // x-amz-security-token when there is a session token, authorization), in that order.
  // Presigning: the query parameters to add (X-Amz-Algorithm ... X-Amz-Signature), decoded.
  Pairs add;
};

Signed sign_headers(const SignRequest& req, const Credentials& creds, const SignOptions& opt);
// For S3 pass kUnsignedPayload: S3 checks a presigned URL's signature with that constant.
Signed presign(const SignRequest& req, const Credentials& creds, const SignOptions& opt);

// RFC 3986 percent-encoding as SigV4 wants it: unreserved characters (A-Z a-z 0-9 - _ . ~)
// stay, everything else becomes %XX (upper case); '/' stays unless encode_slash.
std::string uri_encode(std::string_view s, bool encode_slash);
// The canonical query string: names and values encoded, sorted by name then value,
// "name=value" joined with '&' (a value-less parameter gives "name="). Use the same string
// on the wire so what is sent is what was signed.
std::string canonical_query(const Pairs& query);

std::string sha256_hex(std::string_view data);
std::string hmac_sha256(std::string_view key, std::string_view data);  // raw bytes
std::string hex(std::string_view bytes);

}  // namespace hylab::storage
