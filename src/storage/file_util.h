// File helpers for the storage module: ranged copies, temporary names, atomic replacement
// and streaming hashes (SHA-256 and MD5, the latter for S3's single-part ETags). Plain
// functions and values: any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/result.h"
#include "storage/object_store.h"

namespace hylab::storage {

// An open file descriptor, closed with its owner, and the bytes of it that are the data:
// the whole file, or `length` bytes from `offset` (an object packed with others into one
// file). `on_close` runs once the descriptor is closed (the cache frees a packed object's
// bytes that were evicted while this handle read them).
class FileHandle {
 public:
  explicit FileHandle(int fd, std::uint64_t offset = 0, std::uint64_t length = UINT64_MAX,
                      std::function<void()> on_close = {})
      : fd_(fd), offset_(offset), length_(length), on_close_(std::move(on_close)) {}
  ~FileHandle();
  FileHandle(const FileHandle&) = delete;
  FileHandle& operator=(const FileHandle&) = delete;
  int fd() const { return fd_; }
  std::uint64_t offset() const { return offset_; }
  std::uint64_t length() const { return length_; }  // UINT64_MAX: to the end of the file

 private:
  int fd_;
  std::uint64_t offset_, length_;
  std::function<void()> on_close_;
};

// Copies the handle's bytes (`len` bytes of `fd` from `offset`; to its end with UINT64_MAX)
// to `out_fd` at its position: copy_file_range between files (reflinks where the file
// system has them), sendfile to a pipe or socket.
Result<std::uint64_t> copy_fd(int fd, int out_fd, const std::string& what, std::uint64_t offset = 0,
                              std::uint64_t len = UINT64_MAX);

Result<std::uint64_t> file_size(const std::string& path);
// Copies `len` bytes of `src` from `offset` into `dest` (created or truncated); fsynced
// when `durable`.
Result<bool> copy_range(const std::string& src, const std::string& dest, std::uint64_t offset,
                        std::uint64_t len, const ProgressFn& progress, bool durable = true);
// The same into the open file `out_fd` from `out_offset` (`dest` names it in errors).
Result<bool> copy_range_to(const std::string& src, int out_fd, std::uint64_t out_offset,
                           const std::string& dest, std::uint64_t offset, std::uint64_t len,
                           const ProgressFn& progress);
// A name beside `path` for writing before the rename: "DIR/.NAME.hylab-tmp-PID-N".
std::string temp_name(const std::string& path);
bool is_temp_name(std::string_view key);
// Writes `data` to `path` through a temporary file and a rename: all or nothing (after a
// power loss too when `durable`: fsync before the rename).
Result<bool> write_file_atomic(const std::string& path, std::string_view data, bool durable = true);
Result<std::string> read_small_file(const std::string& path, std::size_t max_bytes);

// The digest that checks an object's bytes: the sha256 its uploader stored, else its ETag
// when that is the MD5 of a single-part upload, else none (size only).
struct Check {
  bool sha256 = false, md5 = false;
};
Check check_for(std::string_view sha256, std::string_view etag);

// SHA-256 and/or MD5 at once, fed in pieces (each costs a pass of CPU over the bytes: ask
// only for what will be checked).
class Hasher {
 public:
  explicit Hasher(bool sha256 = true, bool md5 = true);
  explicit Hasher(Check c) : Hasher(c.sha256, c.md5) {}
  ~Hasher();
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;
  // Starts over with other digests: a download knows which check its object allows once
  // the answer's headers are in (a listing tells neither a stored sha256 nor, for some
  // stores, the ETag), before the first byte.
  void choose(Check c);
  void update(const void* data, std::size_t n);
  void finish();
  void reset();  // starts over (a download retried from its start)
  const std::string& sha256() const { return sha256_; }  // hex, after finish()
  const std::string& md5() const { return md5_; }        // hex, after finish()
  bool finished() const { return finished_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string sha256_, md5_;
  bool finished_ = false;
};

// Is the downloaded file `tmp` (from `offset` to its end: a download appended to a pack)
// the object? Its size, then the strongest check the object allows (see check_for), from
// what the answer said (`got`), else the listing (`info`); with the digests computed during
// the download when they are the ones needed, else by reading the file. `what` names the
// object in the error.
Result<bool> check_download(const std::string& tmp, const ObjectInfo& got, const ObjectInfo& info,
                            const std::string& what, const Hasher& during,
                            std::uint64_t offset = 0);

// "" when the finished hasher holds the digest the check for (sha256, etag) expects (see
// check_for; none expected: ""); otherwise what differs, both digests named.
std::string digest_mismatch(const Hasher& h, std::string_view sha256, std::string_view etag);

// Hashes a whole file (or a range of it).
Result<bool> hash_file(const std::string& path, Hasher& h, std::uint64_t offset = 0,
                       std::uint64_t len = UINT64_MAX);

// "s3 ETag is the MD5 of the body": true for a single-part upload's ETag (32 hex digits).
bool is_md5_etag(std::string_view etag);

std::string errno_text(int err);

}  // namespace hylab::storage
