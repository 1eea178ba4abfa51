// Parsing of the locations the CLI and the config name: s3://bucket/key, file:///path and
// plain local paths (made absolute).
#include <fmt/format.h>

#include <filesystem>

#include "storage/object_store.h"

namespace hylab::storage {

Result<Location> parse_location(const std::string& uri) {
  Location loc;
  if (uri.rfind("s3://", 0) == 0) {
    loc.kind = Location::Kind::kS3;
    std::string rest = uri.substr(5);
    auto slash = rest.find('/');
    loc.bucket = rest.substr(0, slash);
    loc.key = slash == std::string::npos ? "" : rest.substr(slash + 1);
    if (loc.bucket.empty())
      return invalid_input(fmt::format("'{}': no bucket (s3://BUCKET/KEY)", uri));
    return loc;
  }
  std::string path = uri;
  if (uri.rfind("file://", 0) == 0) {
    path = uri.substr(7);
    if (path.empty() || path.front() != '/')
      return invalid_input(
          fmt::format("'{}': a file: URI needs an absolute path (file:///path)", uri));
  } else if (uri.find("://") != std::string::npos) {
    return invalid_input(
        fmt::format("'{}': only s3://, file:// and local paths are supported", uri));
  }
  if (path.empty()) return invalid_input("an empty path");
  std::error_code ec;
  bool dir = !path.empty() && path.back() == '/';
  loc.key = std::filesystem::absolute(path, ec).lexically_normal().string();
  if (dir && !loc.key.empty() && loc.key.back() != '/') loc.key += '/';
  return loc;
}

std::string Location::str() const {
  return kind == Kind::kS3 ? fmt::format("s3://{}/{}", bucket, key) : key;
}

}  // namespace hylab::storage
