// File helpers for the storage module (see file_util.h).
#include "storage/file_util.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/evp.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <vector>

#include "storage/sigv4.h"

namespace hylab::storage {

std::string errno_text(int err) { return std::strerror(err); }

namespace {

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

Error io_error(const std::string& path, int err) {
  if (err == ENOSPC || err == EDQUOT)
    return Error{Errc::kIo, fmt::format("{}: the disk is full ({})", path, errno_text(err))};
  return Error{Errc::kIo, fmt::format("{}: {}", path, errno_text(err))};
}

}  // namespace

FileHandle::~FileHandle() {
  if (fd_ >= 0) ::close(fd_);
  if (on_close_) on_close_();
}

Result<std::uint64_t> copy_fd(int fd, int out_fd, const std::string& what, std::uint64_t offset,
                              std::uint64_t len) {
  auto off = static_cast<off_t>(offset);
  std::uint64_t total = 0;
  auto chunk = [&](std::uint64_t most) {
    return static_cast<std::size_t>(std::min<std::uint64_t>(len - total, most));
  };
  // File to file: copy_file_range, which shares the blocks instead of copying them on file
  // systems with reflinks (XFS, btrfs) and copies in the kernel elsewhere.
  for (;;) {
    if (total == len) return total;
    ssize_t n = ::copy_file_range(fd, &off, out_fd, nullptr, chunk(16u << 20), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && total == 0 &&
        (errno == EINVAL || errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP ||
         errno == EBADF))
      break;  // not two files on one file system (a pipe, say): sendfile or read/write
    if (n < 0) return io_error(what, errno);
    if (n == 0) return total;
    total += static_cast<std::uint64_t>(n);
  }
  for (;;) {
    if (total == len) return total;
    ssize_t n = ::sendfile(out_fd, fd, &off, chunk(16u << 20));
    if (n < 0 && (errno == EINVAL || errno == ENOSYS)) break;  // fall back to read/write
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return io_error(what, errno);
    }
    if (n == 0) return total;
    total += static_cast<std::uint64_t>(n);
  }
  std::vector<char> buf(1 << 20);
  for (;;) {
    if (total == len) return total;
    ssize_t n = ::pread(fd, buf.data(), chunk(buf.size()), off);
    if (n < 0) return io_error(what, errno);
    if (n == 0) return total;
    for (ssize_t w = 0; w < n;) {
      ssize_t k = ::write(out_fd, buf.data() + w, static_cast<std::size_t>(n - w));
      if (k < 0) return io_error(what, errno);
      w += k;
    }
    off += n;
    total += static_cast<std::uint64_t>(n);
  }
}

Result<std::uint64_t> file_size(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return io_error(path, errno);
  if (!S_ISREG(st.st_mode)) return Error{Errc::kInvalidInput, path + ": not a regular file"};
  return static_cast<std::uint64_t>(st.st_size);
}

Result<bool> copy_range_to(const std::string& src, int out_fd, std::uint64_t out_offset,
                           const std::string& dest, std::uint64_t offset, std::uint64_t len,
                           const ProgressFn& progress) {
  Fd in(::open(src.c_str(), O_RDONLY | O_CLOEXEC));
  if (in.fd < 0) return io_error(src, errno);
  auto off = static_cast<off_t>(offset);
  auto out_off = static_cast<off_t>(out_offset);
  std::uint64_t done = 0;
  while (done < len) {
    std::size_t chunk = static_cast<std::size_t>(std::min<std::uint64_t>(len - done, 8u << 20));
    ssize_t n = ::copy_file_range(in.fd, &off, out_fd, &out_off, chunk, 0);
    if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL)) {
      std::vector<char> buf(1 << 20);
      n = ::pread(in.fd, buf.data(), std::min(buf.size(), chunk), off);
      if (n > 0) {
        for (ssize_t w = 0; w < n;) {
          ssize_t k = ::pwrite(out_fd, buf.data() + w, static_cast<std::size_t>(n - w), out_off);
          if (k < 0) return io_error(dest, errno);
          w += k;
          out_off += k;
        }
        off += n;
      }
    }
    if (n < 0) return io_error(dest, errno);
    if (n == 0) return Error{Errc::kIo, fmt::format("{}: shorter than expected", src)};
    done += static_cast<std::uint64_t>(n);
    if (progress) progress(static_cast<std::uint64_t>(n));
  }
  return true;
}

Result<bool> copy_range(const std::string& src, const std::string& dest, std::uint64_t offset,
                        std::uint64_t len, const ProgressFn& progress, bool durable) {
  Fd out(::open(dest.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (out.fd < 0) return io_error(dest, errno);
  auto copied = copy_range_to(src, out.fd, 0, dest, offset, len, progress);
  if (!copied) return copied;
  if (durable && ::fsync(out.fd) != 0) return io_error(dest, errno);
  return true;
}

std::string temp_name(const std::string& path) {
  static std::atomic<unsigned> counter{0};
  auto slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  return fmt::format("{}/.{}.hylab-tmp-{}-{}", dir, name, ::getpid(), counter.fetch_add(1));
}

bool is_temp_name(std::string_view key) {
  return key.find(".hylab-tmp-") != std::string_view::npos;
}

Result<bool> write_file_atomic(const std::string& path, std::string_view data, bool durable) {
  std::string tmp = temp_name(path);
  {
    Fd out(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (out.fd < 0) return io_error(tmp, errno);
    for (std::size_t w = 0; w < data.size();) {
      ssize_t k = ::write(out.fd, data.data() + w, data.size() - w);
      if (k < 0) {
        int e = errno;
        ::unlink(tmp.c_str());
        return io_error(path, e);
      }
      w += static_cast<std::size_t>(k);
    }
    if (durable && ::fsync(out.fd) != 0) {
      int e = errno;
      ::unlink(tmp.c_str());
      return io_error(path, e);
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    return io_error(path, e);
  }
  return true;
}

Result<std::string> read_small_file(const std::string& path, std::size_t max_bytes) {
  Fd in(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (in.fd < 0) return io_error(path, errno);
  std::string s;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(in.fd, buf, sizeof buf);
    if (n < 0) return io_error(path, errno);
    if (n == 0) break;
    s.append(buf, static_cast<std::size_t>(n));
    if (s.size() > max_bytes)
      return Error{Errc::kInvalidInput, fmt::format("{}: larger than {} bytes", path, max_bytes)};
  }
  return s;
}

struct Hasher::Impl {
  EVP_MD_CTX* sha = nullptr;
  EVP_MD_CTX* md5 = nullptr;
  Impl(bool want_sha, bool want_md5) { want(want_sha, want_md5); }
  ~Impl() { want(false, false); }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  void want(bool want_sha, bool want_md5) {
    set(sha, want_sha, EVP_sha256());
    set(md5, want_md5, EVP_md5());
  }
  static void set(EVP_MD_CTX*& ctx, bool on, const EVP_MD* md) {
    if (!on) {
      EVP_MD_CTX_free(ctx);
      ctx = nullptr;
      return;
    }
    if (!ctx) ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, md, nullptr);
  }
};

Check check_for(std::string_view sha256, std::string_view etag) {
  Check c;
  c.sha256 = !sha256.empty();
  c.md5 = !c.sha256 && is_md5_etag(etag);
  return c;
}

Hasher::Hasher(bool sha256, bool md5) : impl_(std::make_unique<Impl>(sha256, md5)) {}
Hasher::~Hasher() = default;

void Hasher::choose(Check c) {
  impl_->want(c.sha256, c.md5);
  sha256_.clear();
  md5_.clear();
  finished_ = false;
}

void Hasher::reset() {
  if (impl_->sha) EVP_DigestInit_ex(impl_->sha, EVP_sha256(), nullptr);
  if (impl_->md5) EVP_DigestInit_ex(impl_->md5, EVP_md5(), nullptr);
  finished_ = false;
}

void Hasher::update(const void* data, std::size_t n) {
  if (impl_->sha) EVP_DigestUpdate(impl_->sha, data, n);
  if (impl_->md5) EVP_DigestUpdate(impl_->md5, data, n);
}

void Hasher::finish() {
  finished_ = true;
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  if (impl_->sha) {
    EVP_DigestFinal_ex(impl_->sha, out, &n);
    sha256_ = hex(std::string_view(reinterpret_cast<const char*>(out), n));
  }
  if (impl_->md5) {
    EVP_DigestFinal_ex(impl_->md5, out, &n);
    md5_ = hex(std::string_view(reinterpret_cast<const char*>(out), n));
  }
}

Result<bool> hash_file(const std::string& path, Hasher& h, std::uint64_t offset,
                       std::uint64_t len) {
  Fd in(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (in.fd < 0) return io_error(path, errno);
  // Sized to the file and not cleared: a 1 MiB zeroed buffer per small file cost more than
  // hashing it.
  struct stat st {};
  if (::fstat(in.fd, &st) == 0 && static_cast<std::uint64_t>(st.st_size) >= offset)
    len = std::min<std::uint64_t>(len, static_cast<std::uint64_t>(st.st_size) - offset);
  std::size_t size = static_cast<std::size_t>(std::min<std::uint64_t>(len, 1 << 20));
  std::unique_ptr<char[]> buf(new char[std::max<std::size_t>(size, 1)]);
  auto off = static_cast<off_t>(offset);
  while (len > 0) {
    ssize_t n = ::pread(in.fd, buf.get(), std::min<std::uint64_t>(size, len), off);
    if (n < 0) return io_error(path, errno);
    if (n == 0) break;
    h.update(buf.get(), static_cast<std::size_t>(n));
    off += n;
    len -= static_cast<std::uint64_t>(n);
  }
  h.finish();
  return true;
}

Result<bool> check_download(const std::string& tmp, const ObjectInfo& got, const ObjectInfo& info,
                            const std::string& what, const Hasher& during, std::uint64_t offset) {
  auto end = file_size(tmp);
  if (!end) return end.error();
  std::uint64_t size = *end >= offset ? *end - offset : 0;
  std::uint64_t want = got.size ? got.size : info.size;
  if (size != want)
    return Error{Errc::kIo,
                 fmt::format("{}: downloaded {} bytes, the object has {}", what, size, want)};
  std::string sha = got.sha256.empty() ? info.sha256 : got.sha256;
  std::string etag = got.etag.empty() ? info.etag : got.etag;
  Check c = check_for(sha, etag);
  if (!c.sha256 && !c.md5) return true;
  // The digests computed during the download when they are the ones needed.
  bool reuse = during.finished() && (!c.sha256 || !during.sha256().empty()) &&
               (!c.md5 || !during.md5().empty());
  Hasher again(c);
  if (!reuse) {
    auto hashed = hash_file(tmp, again, offset, size);
    if (!hashed) return hashed.error();
  }
  std::string bad = digest_mismatch(reuse ? during : again, sha, etag);
  if (!bad.empty())
    return Error{Errc::kIo, fmt::format("{}: integrity check failed: {}", what, bad)};
  return true;
}

std::string digest_mismatch(const Hasher& h, std::string_view sha256, std::string_view etag) {
  Check c = check_for(sha256, etag);
  if (c.sha256 && h.sha256() != sha256)
    return fmt::format("sha256 {} but the object says {}", h.sha256(), sha256);
  if (c.md5 && !std::equal(etag.begin(), etag.end(), h.md5().begin(), h.md5().end(),
                           [](char a, char b) { return std::tolower(a) == std::tolower(b); }))
    return fmt::format("MD5 {} but the ETag is {}", h.md5(), etag);
  return std::string();
}

bool is_md5_etag(std::string_view etag) {
  if (etag.size() != 32) return false;
  for (char c : etag)
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

}  // namespace hylab::storage
