// Moving files between the local disk and an ObjectStore: put and get of one object, get
// of a prefix, and sync in both directions (compared by size, then by hash: the MD5 ETag
// of single-part objects or the sha256 hylab stores with each upload), with parallel
// transfers. Every upload passes the sensitivity rules first. Reads go through the disk
// cache when one is given. Functions are thread-safe if the store and cache are.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/result.h"
#include "storage/cache.h"
#include "storage/object_store.h"
#include "storage/policy.h"

namespace hylab::storage {

struct TransferOptions {
  int parallel = 8;
  bool dry_run = false;
  bool delete_extra = false;  // sync --delete: remove what the source does not have
  ProgressFn progress;        // bytes moved
  // Totals, once: before the transfers for an upload; for a download of a prefix once its
  // listing is complete (downloads start on its first page, objects found the same count as
  // done in `progress`).
  std::function<void(std::uint64_t bytes, std::uint64_t files)> on_plan;
};

enum class Action { kUpload, kDownload, kDelete, kSkip, kRefused };
std::string_view action_name(Action a);

struct PlanItem {
  Action action = Action::kSkip;
  std::string key;    // in the store
  std::string local;  // absolute path
  std::uint64_t size = 0;
  std::string reason;  // why (new, size differs, hash differs, ...) or the refusal
  std::string error;   // the transfer failed
};

struct TransferReport {
  std::vector<PlanItem> items;
  std::uint64_t bytes = 0;  // moved
  std::size_t uploaded = 0, downloaded = 0, deleted = 0, skipped = 0, refused = 0, failed = 0;
  bool ok() const { return failed == 0 && refused == 0; }
};

// A file being written for `dest`, named only once complete: a file without a name in
// dest's folder (O_TMPFILE), linked in at the end (one operation under the folder's lock,
// which many downloads into one folder contend for), or, where that is not possible, a
// temporary name renamed over dest. Destroyed before commit(), it leaves nothing.
class Output {
 public:
  static Result<Output> open(const std::string& dest);
  Output(Output&& o) noexcept;
  Output& operator=(Output&&) = delete;
  ~Output();
  int fd() const { return fd_; }              // open for reading and writing
  Result<bool> fill(const FileHandle& data);  // writes the handle's bytes into it
  Result<bool> commit();                      // names it `dest` (replacing what is there)

 private:
  Output() = default;
  int open_in_folder(const std::string& path, int flags) const;
  std::string dest_, folder_, tmp_;
  int fd_ = -1;
};

// Writes the handle's bytes (a cached copy) to `dest` through an Output, or to standard
// output for "-".
Result<bool> deliver(const FileHandle& data, const std::string& dest);

// Uploads one file; sensitive files are refused (and counted) before any byte leaves.
Result<ObjectInfo> put_file(ObjectStore& store, const SensitivityRules& rules,
                            const std::string& local, const std::string& key,
                            const TransferOptions& opt);

// Downloads one object to `dest` ("-": standard output), through the cache when given.
Result<ObjectInfo> get_file(ObjectStore& store, Cache* cache, const std::string& key,
                            const std::string& dest, const TransferOptions& opt);

// Local folder -> prefix.
Result<TransferReport> sync_up(ObjectStore& store, const SensitivityRules& rules,
                               const std::string& local_dir, const std::string& prefix,
                               const TransferOptions& opt);
// Prefix -> local folder (also `get` of a prefix), through the cache when given.
Result<TransferReport> sync_down(ObjectStore& store, Cache* cache, const std::string& prefix,
                                 const std::string& local_dir, const TransferOptions& opt);

}  // namespace hylab::storage
