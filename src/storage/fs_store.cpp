// The fs backend: a folder as an object store, the embedded default so that everything
// works without a cloud. Keys are paths below the root ("a/b.bin"); an ETag is derived from
// size and modification time (cheap, and changes whenever the file does). Writes go to a
// temporary file in the same folder and are renamed into place. Any thread.
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "storage/file_util.h"
#include "storage/object_store.h"

namespace hylab::storage {
namespace {

namespace fs = std::filesystem;

Error not_found(const std::string& what) {
  return Error{Errc::kNotFound, what + ": no such object"};
}

ObjectInfo info_of(const std::string& key, const struct stat& st) {
  ObjectInfo i;
  i.key = key;
  i.size = static_cast<std::uint64_t>(st.st_size);
  i.mtime = st.st_mtim.tv_sec;
  auto ns = static_cast<std::uint64_t>(st.st_mtim.tv_sec) * 1000000000ULL +
            static_cast<std::uint64_t>(st.st_mtim.tv_nsec);
  // The inode too: a file replaced by another (a rename over it) of the same size within
  // one clock tick is still another ETag.
  i.etag = fmt::format("{:x}-{:x}-{:x}", i.size, ns, static_cast<std::uint64_t>(st.st_ino));
  return i;
}

class FsStore final : public ObjectStore {
 public:
  explicit FsStore(std::string root) : root_(std::move(root)) {}

  std::string describe() const override { return "file://" + root_; }

  Result<ObjectInfo> head(const std::string& key) override {
    auto path = path_of(key);
    if (!path) return path.error();
    struct stat st {};
    if (::stat(path->c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return not_found(*path);
    return info_of(key, st);
  }

  Result<ObjectInfo> revalidate(const std::string& key, const std::string& etag) override {
    auto info = head(key);
    if (info && info->etag == etag) info->not_modified = true;
    return info;
  }

  Result<ObjectInfo> get(const std::string& key, const std::string& dest,
                         const GetOptions& opt) override {
    auto info = head(key);
    if (!info) return info;
    if (!opt.if_none_match.empty() && opt.if_none_match == info->etag) {
      info->not_modified = true;
      return info;
    }
    auto path = path_of(key);
    std::uint64_t len = info->size > opt.offset ? info->size - opt.offset : 0;
    if (opt.length) len = std::min(len, *opt.length);
    auto copied = opt.dest_fd >= 0 ? copy_range_to(*path, opt.dest_fd, opt.dest_offset, dest,
                                                   opt.offset, len, opt.progress)
                                   : copy_range(*path, dest, opt.offset, len, opt.progress, false);
    if (!copied) return copied.error();
    if (opt.tee_fd >= 0) {
      auto teed = copy_range_to(*path, opt.tee_fd, 0, dest, opt.offset, len, nullptr);
      if (!teed) return teed.error();
    }
    return info;
  }

  Result<ObjectInfo> put(const std::string& key, const std::string& src,
                         const PutOptions& opt) override {
    auto path = path_of(key);
    if (!path) return path.error();
    std::error_code ec;
    fs::create_directories(fs::path(*path).parent_path(), ec);
    if (ec)
      return Error{Errc::kIo,
                   fmt::format("{}: {}", fs::path(*path).parent_path().string(), ec.message())};
    std::string tmp = temp_name(*path);
    auto size = file_size(src);
    if (!size) return size.error();
    auto copied = copy_range(src, tmp, 0, *size, opt.progress);
    if (!copied) {
      ::unlink(tmp.c_str());
      return copied.error();
    }
    if (::rename(tmp.c_str(), path->c_str()) != 0) {
      int e = errno;
      ::unlink(tmp.c_str());
      return Error{Errc::kIo, fmt::format("{}: {}", *path, std::strerror(e))};
    }
    auto i = head(key);
    if (i) i->sha256 = opt.sha256;
    return i;
  }

  Result<std::vector<ObjectInfo>> list(const std::string& prefix) override {
    std::vector<ObjectInfo> out;
    std::error_code ec;
    if (!fs::exists(root_, ec)) return out;
    for (auto it = fs::recursive_directory_iterator(root_, ec); !ec && it != fs::end(it);
         it.increment(ec)) {
      if (!it->is_regular_file(ec)) continue;
      std::string key = fs::relative(it->path(), root_, ec).generic_string();
      if (key.rfind(prefix, 0) != 0 || is_temp_name(key)) continue;
      struct stat st {};
      if (::stat(it->path().c_str(), &st) != 0) continue;
      out.push_back(info_of(key, st));
    }
    if (ec) return Error{Errc::kIo, fmt::format("{}: {}", root_, ec.message())};
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.key < b.key; });
    return out;
  }

  Result<bool> remove(const std::string& key) override {
    auto path = path_of(key);
    if (!path) return path.error();
    if (::unlink(path->c_str()) != 0 && errno != ENOENT)
      return Error{Errc::kIo, fmt::format("{}: {}", *path, std::strerror(errno))};
    return true;
  }

 private:
  // Keys never climb out of the root.
  Result<std::string> path_of(const std::string& key) const {
    if (key.empty() || key.front() == '/' || key.find("..") != std::string::npos)
      return invalid_input(fmt::format("'{}' is not a key under {}", key, root_));
    return root_ + "/" + key;
  }

  std::string root_;
};

}  // namespace

std::unique_ptr<ObjectStore> make_fs_store(const std::string& root) {
  std::string r = root;
  while (r.size() > 1 && r.back() == '/') r.pop_back();
  return std::make_unique<FsStore>(r);
}

}  // namespace hylab::storage
