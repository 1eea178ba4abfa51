// Moving files between the local disk and an ObjectStore (see transfer.h).
#include "storage/transfer.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <iterator>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "storage/file_util.h"

namespace hylab::storage {
namespace {

namespace fs = std::filesystem;

std::string with_slash(std::string prefix) {
  if (!prefix.empty() && prefix.back() != '/') prefix += '/';
  return prefix;
}

// Runs `work(i)` for i in [0, n) on up to `parallel` threads.
void run_parallel(std::size_t n, int parallel, const std::function<void(std::size_t)>& work) {
  std::atomic<std::size_t> next{0};
  auto worker = [&] {
    for (std::size_t i; (i = next.fetch_add(1)) < n;) work(i);
  };
  std::size_t threads = std::min<std::size_t>(n, static_cast<std::size_t>(std::max(1, parallel)));
  if (threads <= 1) {
    worker();
    return;
  }
  std::vector<std::thread> pool;
  for (std::size_t t = 0; t < threads; ++t) pool.emplace_back(worker);
  for (auto& t : pool) t.join();
}

// Does the local file hold the object's bytes? Size first, then the MD5 ETag or the
// sha256 the uploader stored; with neither, equal sizes count as equal.
Result<std::string> differs(ObjectStore& store, const ObjectInfo& remote, const std::string& local,
                            std::uint64_t local_size) {
  if (remote.size != local_size) return std::string("size differs");
  std::string sha = remote.sha256;
  if (sha.empty() && !is_md5_etag(remote.etag)) {
    auto h = store.head(remote.key);
    if (!h) return h.error();
    sha = h->sha256;
  }
  Check c = check_for(sha, remote.etag);
  if (!c.sha256 && !c.md5) return std::string();
  Hasher hasher(c);
  auto hashed = hash_file(local, hasher);
  if (!hashed) return hashed.error();
  if (digest_mismatch(hasher, sha, remote.etag).empty()) return std::string();
  return std::string(c.sha256 ? "sha256 differs" : "MD5 differs");
}

Result<ObjectInfo> download(ObjectStore& store, Cache* cache, const ObjectInfo* known,
                            const std::string& key, const std::string& dest,
                            const TransferOptions& opt) {
  if (cache) {
    FetchOptions fo;
    fo.known = known;
    fo.progress = opt.progress;
    fo.parallel = opt.parallel;
    // The destination's file is written by the download itself when there is one (the
    // cache's copy and this one in one pass), else copied from the cache.
    std::optional<Output> out;
    if (dest != "-") {
      auto o = Output::open(dest);
      if (!o) return o.error();
      out.emplace(std::move(*o));
      fo.tee_fd = out->fd();
    }
    auto f = cache->fetch(store, key, fo);
    if (!f) return f.error();
    Result<bool> d = true;
    if (!out) {
      d = deliver(*f->file, dest);
    } else {
      if (!f->teed) d = out->fill(*f->file);
      if (d) d = out->commit();
    }
    if (!d) return d.error();
    ObjectInfo i;
    i.key = key;
    i.size = f->entry.size;
    i.etag = f->entry.etag;
    i.sha256 = f->entry.sha256;
    return i;
  }
  // Without a cache: straight to a temporary file beside the destination, checked as the
  // cache checks its downloads, then renamed.
  std::error_code ec;
  Hasher hasher(known ? check_for(known->sha256, known->etag) : Check{});
  GetOptions go;
  go.progress = opt.progress;
  go.parallel = opt.parallel;
  go.hasher = &hasher;
  go.known = known;
  auto fetch = [&](const std::string& tmp) -> Result<ObjectInfo> {
    auto got = store.get(key, tmp, go);
    if (!got) return got;
    auto checked =
        check_download(tmp, *got, known ? *known : *got, store.describe() + "/" + key, hasher);
    if (!checked) return checked.error();
    return got;
  };
  if (dest == "-") {
    std::string tmp = temp_name((fs::temp_directory_path(ec) / "hylab-get").string());
    auto got = fetch(tmp);
    if (!got) {
      ::unlink(tmp.c_str());
      return got;
    }
    FileHandle f(::open(tmp.c_str(), O_RDONLY | O_CLOEXEC));
    ::unlink(tmp.c_str());
    auto d = deliver(f, dest);
    if (!d) return d.error();
    return got;
  }
  fs::create_directories(fs::path(dest).parent_path(), ec);
  std::string tmp = temp_name(dest);
  auto got = fetch(tmp);
  if (!got || ::rename(tmp.c_str(), dest.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    if (!got) return got.error();
    return Error{Errc::kIo, fmt::format("{}: {}", dest, errno_text(e))};
  }
  return got;
}

void tally(TransferReport& r) {
  for (const auto& i : r.items) {
    if (!i.error.empty()) {
      ++r.failed;
      continue;
    }
    switch (i.action) {
      case Action::kUpload:
        ++r.uploaded;
        break;
      case Action::kDownload:
        ++r.downloaded;
        break;
      case Action::kDelete:
        ++r.deleted;
        break;
      case Action::kSkip:
        ++r.skipped;
        break;
      case Action::kRefused:
        ++r.refused;
        break;
    }
  }
}

}  // namespace

Result<Output> Output::open(const std::string& dest) {
  Output o;
  o.dest_ = dest;
  fs::path parent = fs::path(dest).parent_path();
  o.folder_ = parent.empty() ? std::string(".") : parent.string();
  o.fd_ = o.open_in_folder(o.folder_, O_TMPFILE | O_RDWR);
  if (o.fd_ >= 0) return o;
  o.tmp_ = temp_name(dest);
  o.fd_ = o.open_in_folder(o.tmp_, O_CREAT | O_TRUNC | O_RDWR);
  if (o.fd_ < 0) return Error{Errc::kIo, fmt::format("{}: {}", o.tmp_, errno_text(errno))};
  return o;
}

int Output::open_in_folder(const std::string& path, int flags) const {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0644);
  if (fd < 0 && errno == ENOENT) {  // the folder first (not before: most exist)
    std::error_code ec;
    fs::create_directories(folder_, ec);
    fd = ::open(path.c_str(), flags | O_CLOEXEC, 0644);
  }
  return fd;
}

Output::Output(Output&& o) noexcept
    : dest_(std::move(o.dest_)),
      folder_(std::move(o.folder_)),
      tmp_(std::move(o.tmp_)),
      fd_(std::exchange(o.fd_, -1)) {}

Output::~Output() {
  if (fd_ >= 0) ::close(fd_);
  if (!tmp_.empty()) ::unlink(tmp_.c_str());
}

Result<bool> Output::fill(const FileHandle& data) {
  auto n = copy_fd(data.fd(), fd_, dest_, data.offset(), data.length());
  if (!n) return n.error();
  return true;
}

Result<bool> Output::commit() {
  auto rename_into_place = [&]() -> Result<bool> {
    ::close(std::exchange(fd_, -1));
    if (::rename(tmp_.c_str(), dest_.c_str()) == 0) {
      tmp_.clear();
      return true;
    }
    return Error{Errc::kIo, fmt::format("{}: {}", dest_, errno_text(errno))};
  };
  if (!tmp_.empty()) return rename_into_place();
  // A file without a name: linked in as dest (one operation under the folder's lock), or,
  // where a file is there already, under a temporary name renamed over it.
  std::string self = "/proc/self/fd/" + std::to_string(fd_);
  auto name = [&](const std::string& as) {
    return ::linkat(AT_FDCWD, self.c_str(), AT_FDCWD, as.c_str(), AT_SYMLINK_FOLLOW) == 0;
  };
  if (name(dest_)) {
    ::close(std::exchange(fd_, -1));
    return true;
  }
  bool taken = errno == EEXIST;
  std::string tmp = temp_name(dest_);
  if (taken && name(tmp)) {
    tmp_ = tmp;
    return rename_into_place();
  }
  // No /proc: the bytes into a file with a temporary name.
  int out = open_in_folder(tmp, O_CREAT | O_TRUNC | O_WRONLY);
  if (out < 0) return Error{Errc::kIo, fmt::format("{}: {}", tmp, errno_text(errno))};
  tmp_ = tmp;
  auto n = copy_fd(fd_, out, dest_);
  ::close(fd_);
  fd_ = out;
  if (!n) return n.error();
  return rename_into_place();
}

Result<bool> deliver(const FileHandle& data, const std::string& dest) {
  if (dest == "-") {
    auto n = copy_fd(data.fd(), STDOUT_FILENO, "standard output", data.offset(), data.length());
    if (!n) return n.error();
    return true;
  }
  auto out = Output::open(dest);
  if (!out) return out.error();
  auto filled = out->fill(data);
  if (!filled) return filled;
  return out->commit();
}

std::string_view action_name(Action a) {
  switch (a) {
    case Action::kUpload:
      return "upload";
    case Action::kDownload:
      return "download";
    case Action::kDelete:
      return "delete";
    case Action::kSkip:
      return "skip";
    case Action::kRefused:
      return "refused";
  }
  return "?";
}

Result<ObjectInfo> put_file(ObjectStore& store, const SensitivityRules& rules,
                            const std::string& local, const std::string& key,
                            const TransferOptions& opt) {
  auto allowed = rules.check_upload(local, store.describe() + "/" + key);
  if (!allowed) return allowed.error();
  Hasher h(true, false);
  auto hashed = hash_file(local, h);
  if (!hashed) return hashed.error();
  PutOptions po;
  po.sha256 = h.sha256();
  po.progress = opt.progress;
  po.parallel = opt.parallel;
  return store.put(key, local, po);
}

Result<ObjectInfo> get_file(ObjectStore& store, Cache* cache, const std::string& key,
                            const std::string& dest, const TransferOptions& opt) {
  return download(store, cache, nullptr, key, dest, opt);
}

Result<TransferReport> sync_up(ObjectStore& store, const SensitivityRules& rules,
                               const std::string& local_dir, const std::string& prefix_in,
                               const TransferOptions& opt) {
  std::string prefix = with_slash(prefix_in);
  std::error_code ec;
  if (!fs::is_directory(local_dir, ec))
    return Error{Errc::kInvalidInput, fmt::format("{}: not a folder", local_dir)};
  auto remote = store.list(prefix);
  if (!remote) return remote.error();
  std::map<std::string, const ObjectInfo*> by_key;
  for (const auto& o : *remote) by_key[o.key] = &o;
  TransferReport rep;
  std::map<std::string, bool> seen;
  for (auto it = fs::recursive_directory_iterator(local_dir, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    if (!it->is_regular_file(ec) || is_temp_name(it->path().filename().string())) continue;
    PlanItem item;
    item.local = fs::absolute(it->path()).lexically_normal().string();
    item.key = prefix + fs::relative(it->path(), local_dir).generic_string();
    item.size = it->file_size(ec);
    seen[item.key] = true;
    auto allowed = rules.check_upload(item.local, store.describe() + "/" + item.key);
    if (!allowed) {
      item.action = Action::kRefused;
      item.reason = allowed.error().message;
    } else if (auto r = by_key.find(item.key); r == by_key.end()) {
      item.action = Action::kUpload;
      item.reason = "new";
    } else {
      item.action = Action::kUpload;
      item.reason = "";
    }
    rep.items.push_back(std::move(item));
  }
  if (ec) return Error{Errc::kIo, fmt::format("{}: {}", local_dir, ec.message())};
  if (opt.delete_extra) {
    for (const auto& o : *remote) {
      if (seen.count(o.key)) continue;
      PlanItem item;
      item.action = Action::kDelete;
      item.key = o.key;
      item.size = o.size;
      item.reason = "not in " + local_dir;
      rep.items.push_back(std::move(item));
    }
  }
  // Comparing by hash reads files: in parallel, as the transfers.
  run_parallel(rep.items.size(), opt.parallel, [&](std::size_t i) {
    PlanItem& item = rep.items[i];
    if (item.action != Action::kUpload || !item.reason.empty()) return;
    auto d = differs(store, *by_key[item.key], item.local, item.size);
    if (!d) {
      item.error = d.error().message;
    } else if (d->empty()) {
      item.action = Action::kSkip;
      item.reason = "same";
    } else {
      item.reason = *d;
    }
  });
  std::uint64_t total = 0, files = 0;
  for (const auto& i : rep.items)
    if (i.action == Action::kUpload && i.error.empty()) total += i.size, ++files;
  if (opt.on_plan) opt.on_plan(total, files);
  if (!opt.dry_run) {
    run_parallel(rep.items.size(), opt.parallel, [&](std::size_t i) {
      PlanItem& item = rep.items[i];
      if (!item.error.empty()) return;
      if (item.action == Action::kUpload) {
        TransferOptions one = opt;
        one.parallel = 1;  // parallel across files already
        auto r = put_file(store, rules, item.local, item.key, one);
        if (!r) item.error = r.error().message;
      } else if (item.action == Action::kDelete) {
        auto r = store.remove(item.key);
        if (!r) item.error = r.error().message;
      }
    });
    for (const auto& i : rep.items)
      if (i.action == Action::kUpload && i.error.empty()) rep.bytes += i.size;
  }
  tally(rep);
  return rep;
}

Result<TransferReport> sync_down(ObjectStore& store, Cache* cache, const std::string& prefix_in,
                                 const std::string& local_dir, const TransferOptions& opt) {
  std::string prefix = prefix_in.empty() ? "" : with_slash(prefix_in);
  // Work starts on each page of the listing as it arrives (a prefix of a million keys is a
  // thousand listing requests): the listing runs on this thread, `parallel` workers compare
  // and download what it has handed out so far. Deques: items keep their place as more come.
  std::deque<PlanItem> items;
  std::deque<ObjectInfo> sources;  // beside items, for the downloads
  std::map<std::string, bool> wanted;
  std::mutex mu;
  std::condition_variable cv;
  std::size_t listed = 0, next = 0;
  bool listing_done = false;
  std::uint64_t total = 0, files = 0;
  const fs::path root = fs::path(local_dir).lexically_normal();
  auto on_page = [&](std::vector<ObjectInfo>&& page, bool last) {
    std::lock_guard lock(mu);
    for (auto& o : page) {
      if (o.key.size() <= prefix.size() || o.key.back() == '/') continue;  // folder markers
      PlanItem item;
      item.action = Action::kDownload;
      item.key = o.key;
      item.size = o.size;
      item.local = (fs::path(local_dir) / o.key.substr(prefix.size())).lexically_normal().string();
      // A key must not write outside the destination ("../" in a hostile bucket).
      auto rel = fs::path(item.local).lexically_relative(root);
      if (rel.empty() || *rel.begin() == "..") {
        item.error = fmt::format("the key {} would land outside {}", o.key, local_dir);
      } else {
        total += item.size, ++files;
      }
      wanted[item.local] = true;
      items.push_back(std::move(item));
      sources.push_back(std::move(o));
    }
    listed = items.size();
    listing_done = last;
    cv.notify_all();
  };
  auto work = [&] {
    for (;;) {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return next < listed || listing_done; });
      if (next >= listed) return;
      std::size_t i = next++;
      PlanItem& item = items[i];
      const ObjectInfo& source = sources[i];
      // One object alone gets parallel ranges; among many, one stream each.
      int parallel = listing_done && listed == 1 ? opt.parallel : 1;
      lock.unlock();
      if (!item.error.empty()) continue;
      std::error_code ec;
      auto size = fs::file_size(item.local, ec);
      if (ec) {
        item.reason = "new";
      } else if (auto d = differs(store, source, item.local, size); !d) {
        item.error = d.error().message;
        continue;
      } else if (d->empty()) {
        item.action = Action::kSkip;
        item.reason = "same";
        if (opt.progress) opt.progress(item.size);  // counted as done
        continue;
      } else {
        item.reason = *d;
      }
      if (opt.dry_run) continue;
      TransferOptions one = opt;
      one.parallel = parallel;
      auto r = download(store, cache, &source, item.key, item.local, one);
      if (!r) item.error = r.error().message;
    }
  };
  std::vector<std::thread> workers;
  for (int t = 0; t < std::max(1, opt.parallel); ++t) workers.emplace_back(work);
  auto listing = store.list_pages(prefix, on_page);
  {
    std::lock_guard lock(mu);
    listing_done = true;
    if (!listing) listed = next;  // failed: the workers end with what they are doing
    cv.notify_all();
  }
  // Totals for the progress line once the listing is complete (downloads and comparisons).
  if (listing && opt.on_plan) opt.on_plan(total, files);
  for (auto& t : workers) t.join();
  if (!listing) return listing.error();
  TransferReport rep;
  rep.items.assign(std::make_move_iterator(items.begin()), std::make_move_iterator(items.end()));
  std::error_code ec;
  if (opt.delete_extra && fs::is_directory(local_dir, ec)) {
    std::size_t first_delete = rep.items.size();
    for (auto it = fs::recursive_directory_iterator(local_dir, ec); !ec && it != fs::end(it);
         it.increment(ec)) {
      if (!it->is_regular_file(ec)) continue;
      std::string p = it->path().lexically_normal().string();
      if (wanted.count(p)) continue;
      PlanItem item;
      item.action = Action::kDelete;
      item.local = p;
      item.size = it->file_size(ec);
      item.reason = "not under " + store.describe() + "/" + prefix;
      rep.items.push_back(std::move(item));
    }
    if (!opt.dry_run) {
      run_parallel(rep.items.size() - first_delete, opt.parallel, [&](std::size_t i) {
        PlanItem& item = rep.items[first_delete + i];
        if (::unlink(item.local.c_str()) != 0) item.error = item.local + ": " + errno_text(errno);
      });
    }
  }
  if (!opt.dry_run) {
    for (const auto& i : rep.items)
      if (i.action == Action::kDownload && i.error.empty()) rep.bytes += i.size;
  }
  tally(rep);
  return rep;
}

}  // namespace hylab::storage
