// The disk cache in front of an ObjectStore: whole objects kept on a local disk under a hard
// byte bound (checked at every insert, counting downloads in flight, never on a timer),
// least recently used first out, optional maximum age, pinning. Entries are keyed by store,
// key and ETag, so a changed object is never served stale: after `revalidate_after` an entry
// is checked with a conditional HEAD (If-None-Match). Downloads land in a temporary file
// (small objects: past the end of a pack file that only this download appends to), are
// checked (size, then the sha256 the uploader stored or the object's MD5 ETag) and renamed
// into place; an entry exists once its line in the cache's log does, so a crash at any
// point leaves either the old state or the new one, and opening the cache removes what a
// crash left half-done. Concurrent readers of one missing object cause one download
// (single-flight). One process uses a cache folder at a time (an flock held while open; a
// second one waits). A Cache is thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "storage/file_util.h"
#include "storage/object_store.h"

namespace hylab::storage {

struct CacheOptions {
  std::string dir;
  std::uint64_t max_bytes = 50ULL << 30;
  double max_age_seconds = 0;            // 0: no maximum age
  double revalidate_after_seconds = 60;  // 0: revalidate at every read
  double lock_wait_seconds = 60;         // for a folder another process holds
  // Objects up to this size are appended to shared pack files instead of a file each (a
  // new file costs far more than its bytes when there are thousands); 0: a file each.
  std::uint64_t pack_max_bytes = 1ULL << 20;
  // Whether files in a folder can get holes (packs need them); probed when unset. (Tests
  // set it: a file system without holes cannot be made without root.)
  std::function<bool(const std::string& dir)> holes_work;
  std::function<std::int64_t()> now;  // unix seconds; the system clock when unset
};

struct CacheEntry {
  std::string store;  // ObjectStore::cache_id()
  std::string key;
  std::string etag;
  std::string sha256;  // when known
  std::uint64_t size = 0;
  std::int64_t fetched_at = 0, validated_at = 0, last_access = 0;
  bool pinned = false;
  std::string path;            // the data file (a pack file for a packed entry)
  bool packed = false;         // its bytes are `size` bytes of a pack file from `offset`
  std::uint64_t offset = 0;    // (packed)
  std::int64_t access_ns = 0;  // (packed) the last use, in ns: orders eviction across runs
};

struct CacheStats {
  std::uint64_t bytes = 0, max_bytes = 0, entries = 0, pinned_bytes = 0;
  std::uint64_t hits = 0, misses = 0, revalidated = 0, evictions = 0, repaired = 0;
  std::uint64_t refused_uploads = 0;  // sensitive files refused, kept across runs
};

struct FetchOptions {
  const ObjectInfo* known = nullptr;                // size and ETag from a listing: no HEAD first
  std::function<void(std::uint64_t size)> on_size;  // before a download starts
  ProgressFn progress;
  int parallel = 4;
  bool pin = false;
  // The caller's own copy: a download made by this fetch also writes every byte here (see
  // GetOptions::tee_fd), which saves copying the cached file afterwards. Fetched::teed
  // says whether it did (a hit, or another caller's download, leaves the file untouched).
  int tee_fd = -1;
};

enum class FetchKind { kHit, kRevalidated, kDownloaded };

struct Fetched {
  CacheEntry entry;
  FetchKind kind = FetchKind::kHit;
  // The data, open: read through this, not entry.path (an eviction may unlink the path).
  std::shared_ptr<FileHandle> file;
  bool teed = false;  // FetchOptions::tee_fd holds the object
};

// The cache folder: `configured`, else $XDG_CACHE_HOME/hylab, else ~/.cache/hylab.
std::string default_cache_dir(const std::string& configured);
// The figures the last process that had the cache open left in its stats.json (nothing if
// none has): for /metrics, without taking the cache's lock.
std::optional<CacheStats> saved_cache_stats(const std::string& dir);

class Cache {
 public:
  static Result<std::unique_ptr<Cache>> open(CacheOptions opt);
  ~Cache();
  Cache(const Cache&) = delete;
  Cache& operator=(const Cache&) = delete;

  // A complete, checked local copy of the object, downloaded when missing or changed.
  Result<Fetched> fetch(ObjectStore& store, const std::string& key, const FetchOptions& opt = {});
  // Pins (or unpins) every cached entry whose key starts with `prefix`; returns how many.
  Result<std::size_t> pin(const std::string& store, const std::string& prefix, bool pinned);
  // Removes unpinned entries whose key starts with `prefix` (all with "", pinned too with
  // `force`); returns the bytes freed.
  Result<std::uint64_t> evict(const std::string& store, const std::string& prefix, bool force);
  CacheStats stats() const;
  // Adds sensitive uploads refused by this run to the counter kept with the cache.
  void count_refused(std::uint64_t n);
  std::vector<CacheEntry> entries() const;
  const CacheOptions& options() const;

 private:
  struct Impl;
  explicit Cache(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hylab::storage
