// The ObjectStore interface: objects by key in one bucket (s3) or one folder (fs), and the
// backends behind it. Keys are full keys inside the bucket ("datasets/a.parquet"); the
// store never interprets them as local paths. Expected failures are Result values
// (Errc::kNotFound for a missing object). A store may be used from several threads at once.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"

namespace hylab::storage {

class Hasher;

struct ObjectInfo {
  std::string key;
  std::uint64_t size = 0;
  std::string etag;           // without quotes
  std::int64_t mtime = 0;     // unix seconds
  std::string sha256;         // hex, when the store knows it (x-amz-meta-sha256, fs)
  bool not_modified = false;  // get() with if_none_match: the object still has that ETag
};

// Bytes moved so far, for progress bars; called from the transferring threads.
using ProgressFn = std::function<void(std::uint64_t bytes)>;

struct GetOptions {
  std::uint64_t offset = 0;
  std::optional<std::uint64_t> length;  // the rest of the object when unset
  std::string if_none_match;            // an ETag: not_modified instead of the body
  ProgressFn progress;
  int parallel = 4;  // ranged parts at once for a large whole-object download
  // Fed with the whole object's bytes in order and finished, when the store can do that
  // while downloading (saves reading the file again to check it); left unfinished if not.
  Hasher* hasher = nullptr;
  // What the caller already knows of the object (size, ETag): saves a HEAD.
  const ObjectInfo* known = nullptr;
  // Into this open file from `dest_offset` instead of creating `dest` (which then only names
  // it in messages): the cache appends small objects to a shared pack file. The file past
  // `dest_offset` is the download's to write and to cut back (a retry starts over).
  int dest_fd = -1;
  std::uint64_t dest_offset = 0;
  // Also written with every byte, at its offset in the object: a second copy made while
  // the first is (the cache fills its own file and the reader's in one pass). Cut back
  // with the destination when a retry starts over.
  int tee_fd = -1;
};

struct PutOptions {
  std::string sha256;  // hex of the file; stored as metadata so readers can check it
  ProgressFn progress;
  int parallel = 4;  // multipart parts at once
};

class ObjectStore {
 public:
  virtual ~ObjectStore() = default;
  // "s3://bucket" or "file:///path", for messages.
  virtual std::string describe() const = 0;
  // Identifies the store in cache keys: the endpoint and the bucket, or the folder.
  virtual std::string cache_id() const { return describe(); }
  virtual Result<ObjectInfo> head(const std::string& key) = 0;
  // A conditional HEAD (If-None-Match): not_modified while the object keeps that ETag.
  virtual Result<ObjectInfo> revalidate(const std::string& key, const std::string& etag) = 0;
  // Writes the object (or the range) to `dest`, a file created or truncated (or into
  // opt.dest_fd); the caller
  // owns atomicity (the cache downloads into a temporary file and renames it).
  // Not fsynced: the caller decides what must survive a power loss.
  virtual Result<ObjectInfo> get(const std::string& key, const std::string& dest,
                                 const GetOptions& opt) = 0;
  virtual Result<ObjectInfo> put(const std::string& key, const std::string& src,
                                 const PutOptions& opt) = 0;
  // Every object whose key starts with `prefix`, in key order.
  virtual Result<std::vector<ObjectInfo>> list(const std::string& prefix) = 0;
  // The same, handed out page by page as the store answers (S3: up to 1,000 keys a page),
  // so a caller can start on one page while the next is fetched; `last` marks the last
  // page. The default: one page.
  using PageFn = std::function<void(std::vector<ObjectInfo>&& page, bool last)>;
  virtual Result<bool> list_pages(const std::string& prefix, const PageFn& on_page) {
    auto all = list(prefix);
    if (!all) return all.error();
    on_page(std::move(*all), true);
    return true;
  }
  // Deleting a missing object succeeds (as S3 does).
  virtual Result<bool> remove(const std::string& key) = 0;
};

// Where objects live: "s3://bucket/prefix" or "file:///path" (a bare path is a file: URI).
struct Location {
  enum class Kind { kFile, kS3 } kind = Kind::kFile;
  std::string bucket;  // s3
  std::string key;     // s3: the key or prefix inside the bucket; file: the absolute path
  bool is_remote() const { return kind == Kind::kS3; }
  std::string str() const;
};
Result<Location> parse_location(const std::string& uri);

struct S3Options {
  std::string endpoint_url;  // empty: https://s3.REGION.amazonaws.com
  std::string region = "us-east-1";
  bool virtual_hosted = false;  // bucket.host instead of host/bucket
  std::string profile;          // credentials profile; empty: AWS_PROFILE or default
  std::string ca_file;          // empty: AWS_CA_BUNDLE, else the system's
  std::uint64_t multipart_threshold = 64ULL << 20;
  std::uint64_t part_size = 16ULL << 20;
  // A large download starts as one stream; while it is slower than this (bytes a second),
  // the rest is split into part_size ranges fetched in parallel. 0: never split;
  // ~0 (`always` in hylab.yaml): ranges from the start.
  std::uint64_t split_below = 256ULL << 20;
  double split_probe_seconds = 0.25;  // how often the stream's rate is judged
  int max_attempts = 5;               // 5xx, throttling and connection errors, with back-off
  double timeout_seconds = 60;        // without a byte moving
};

Result<std::unique_ptr<ObjectStore>> make_s3_store(const std::string& bucket, const S3Options& opt);
// A folder as an object store; keys become paths below `root`.
std::unique_ptr<ObjectStore> make_fs_store(const std::string& root);

}  // namespace hylab::storage
