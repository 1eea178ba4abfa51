// The disk cache (see cache.h for the guarantees). Layout under the cache folder:
//   .lock                      flock held while a process has the cache open
//   objects/XY/ID.data         the object's bytes (ID: sha256 of store and key)
//   objects/XY/ID.partN        a download in progress (deleted when the cache opens)
//   index.log                  the entries' metadata, one JSON line per change: an entry
//                              (store, key, etag, sha256, size, times, pinned) or
//                              {"gone": ID}; the last line of an ID wins
//   stats.json                 counters kept across runs
//   state.json                 since when writes may be unsynced, and in which boot
// An entry exists when its data file is there and its latest line in index.log names it.
// Replacing an entry writes its "gone" line first, then renames the new data into place,
// then appends the new line: a crash in between leaves data without an entry, which
// opening the cache deletes. Each line is one write() to a file opened for appending (a
// killed process cannot cut it; a line torn by a power loss does not parse and is
// skipped). Opening the cache rewrites the log with only the live entries when it has
// grown to more than twice their number, and so does a long-running process.
// One log instead of a metadata file per entry: an entry costs one inode, not two (new
// inodes dominate the time of downloading many small objects), and opening the cache
// reads one file. Older versions' objects/XY/ID.meta files are read once and folded in;
// their tmp/ folder is emptied. (Metadata in an xattr was measured slower still: ext4
// gives a value this size its own block per file.)
#include "storage/cache.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "common/units.h"
#include "storage/file_util.h"
#include "storage/sigv4.h"

namespace hylab::storage {

namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

// The object in a small JSON file the cache wrote; nothing when it is missing or torn.
std::optional<json::object> read_json_object(const std::string& path) {
  auto text = read_small_file(path, 1 << 20);
  if (!text) return std::nullopt;
  boost::system::error_code ec;
  json::value v = json::parse(*text, ec);
  if (ec || !v.is_object()) return std::nullopt;
  return std::move(v.as_object());
}

// Fields read leniently: missing or of another type reads as "" or 0.
std::string json_string(const json::object& o, const char* k) {
  const auto* p = o.if_contains(k);
  return p && p->is_string() ? std::string(p->as_string()) : std::string();
}
template <class T>
T json_number(const json::object& o, const char* k) {
  const auto* p = o.if_contains(k);
  return p && p->is_number() ? p->to_number<T>() : T{};
}

}  // namespace

struct Cache::Impl {
  CacheOptions opt;
  int lock_fd = -1;
  mutable std::mutex mu;
  std::condition_variable cv;
  std::map<std::string, CacheEntry> entries;    // by id
  std::map<std::uint64_t, std::string> lru;     // access order -> id
  std::map<std::string, std::uint64_t> seq_of;  // id -> access order
  std::uint64_t next_seq = 1;
  std::set<std::string> inflight;                    // ids being downloaded or revalidated
  std::array<std::atomic<bool>, 256> folder_made{};  // objects/XY exists (see made_folder)
  std::uint64_t used = 0, reserved = 0;
  CacheStats counters;  // hits, misses, ... (bytes/entries computed)
  std::atomic<unsigned> tmp_counter{0};
  bool locked = false;          // the folder's flock is ours: only then write into it
  std::int64_t last_stamp = 0;  // the latest data-file mtime set, in ns (see opened())

  std::int64_t dirty_since = 0;  // entries written after this may not be on the disk
  // index.log, open for appending. log_mu guards it and the two counts; taken after mu
  // where both are held (a new entry's line is written without mu: a write can wait on the
  // file system's journal, and every other fetch would wait with it).
  std::mutex log_mu;
  int log_fd = -1;
  std::uint64_t log_size = 0;               // its bytes: a failed append is cut back to this
  std::atomic<std::uint64_t> log_lines{0};  // its lines: rewritten when far more than the entries
  std::atomic<int> unlisted{0};  // new entries whose line is written but which are not in yet

  ~Impl() {
    if (locked) save_stats();
    if (log_fd >= 0) ::close(log_fd);
    if (lock_fd >= 0) ::close(lock_fd);
  }

  static std::string boot_id() {
    auto id = read_small_file("/proc/sys/kernel/random/boot_id", 128);
    return id ? *id : std::string();
  }

  // Entries are written without an fsync each (thousands of small files would each wait on
  // the disk, and a large one would wait for all of it). state.json says since when this
  // cache holds unsynced writes and in which boot. Opening in the same boot syncs them
  // (long written back by then, usually: cheap) and trusts them: a killed process loses
  // nothing that the page cache holds. Opening after a reboot that may have been a power
  // loss checks what was written since then against its hash, and drops what has none.
  Result<bool> write_state() {
    json::object o;
    o["boot_id"] = boot_id();
    o["dirty_since"] = now();
    return write_file_atomic(opt.dir + "/state.json", json::serialize(o), true);
  }

  void read_state() {
    if (!fs::exists(opt.dir + "/state.json")) return;
    auto o = read_json_object(opt.dir + "/state.json");
    std::string boot = o ? json_string(*o, "boot_id") : std::string();
    if (!boot.empty() && boot == boot_id()) {
      ::syncfs(lock_fd);
      return;
    }
    dirty_since = o ? json_number<std::int64_t>(*o, "dirty_since") : 1;
    if (dirty_since <= 0) dirty_since = 1;
  }

  // After a possible power loss: does the entry's data still match its hash?
  static bool intact(const CacheEntry& e) {
    Check c = check_for(e.sha256, e.etag);
    if (!c.sha256 && !c.md5) return false;  // nothing to check it with: drop it
    Hasher h(c);
    return hash_file(e.path, h) && digest_mismatch(h, e.sha256, e.etag).empty();
  }

  std::int64_t now() const {
    if (opt.now) return opt.now();
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

  static std::string id_of(const std::string& store, const std::string& key) {
    return sha256_hex(store + "\n" + key).substr(0, 40);
  }
  std::string base_of(const std::string& id) const {
    return fmt::format("{}/objects/{}/{}", opt.dir, id.substr(0, 2), id);
  }

  // Creates objects/XY for the id once per process (not a stat per download).
  void made_folder(const std::string& id) {
    unsigned xy = static_cast<unsigned>(std::stoul(id.substr(0, 2), nullptr, 16)) & 0xff;
    if (folder_made[xy].load(std::memory_order_acquire)) return;
    std::error_code ec;
    fs::create_directories(fs::path(base_of(id)).parent_path(), ec);
    if (!ec) folder_made[xy].store(true, std::memory_order_release);
  }

  void touch(const std::string& id) {
    auto it = seq_of.find(id);
    if (it != seq_of.end()) lru.erase(it->second);
    seq_of[id] = next_seq;
    lru[next_seq++] = id;
  }

  void forget(const std::string& id) {
    auto it = seq_of.find(id);
    if (it != seq_of.end()) {
      lru.erase(it->second);
      seq_of.erase(it);
    }
    auto e = entries.find(id);
    if (e != entries.end()) {
      used -= e->second.size;
      entries.erase(e);
    }
  }

  // Ends an entry: its "gone" line first, then its data. (Under mu.)
  void remove_files(const std::string& id) {
    json::object o;
    o["gone"] = id;
    (void)append(json::serialize(o));
    ::unlink((base_of(id) + ".data").c_str());
  }

  static std::string meta_json(const CacheEntry& e) {
    json::object o;
    o["store"] = e.store;
    o["key"] = e.key;
    o["etag"] = e.etag;
    o["sha256"] = e.sha256;
    o["size"] = e.size;
    o["fetched_at"] = e.fetched_at;
    o["validated_at"] = e.validated_at;
    o["pinned"] = e.pinned;
    return json::serialize(o);
  }

  // One line onto index.log, in one write(); a short write (a full disk) is cut back so
  // the next line starts clean.
  Result<bool> append(std::string line) {
    line += '\n';
    std::lock_guard g(log_mu);
    ssize_t n = ::write(log_fd, line.data(), line.size());
    if (n != static_cast<ssize_t>(line.size())) {
      int err = n < 0 ? errno : ENOSPC;
      // (Should the cut fail too, the torn line does not parse and is skipped at open.)
      if (n > 0) (void)!::ftruncate(log_fd, static_cast<off_t>(log_size));
      return Error{Errc::kIo, fmt::format("{}/index.log: {}", opt.dir, errno_text(err))};
    }
    log_size += line.size();
    ++log_lines;
    return true;
  }

  // An entry's metadata, new or changed.
  Result<bool> write_meta(const CacheEntry& e) { return append(meta_json(e)); }

  // Rewrites index.log with only the live entries (a temporary file, then renamed), once
  // it holds more than twice their lines. (Under mu, or while opening.)
  Result<bool> compact(bool force) {
    // (Most calls end here, without waiting for an append in progress.) Not while a new
    // entry's line is written but the entry not yet in `entries`: the rewrite would lose
    // it. A line written once this has begun waits for log_mu and goes to the new log.
    auto small = [&] { return log_lines <= 2 * entries.size() + 1024; };
    if (!force && log_fd >= 0 && (unlisted > 0 || small())) return true;
    std::lock_guard g(log_mu);
    std::string path = opt.dir + "/index.log";
    if (!force && small()) {
      if (log_fd >= 0) return true;
      log_fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
      struct stat st {};
      if (log_fd < 0 || ::fstat(log_fd, &st) != 0)
        return Error{Errc::kIo, fmt::format("{}: {}", path, errno_text(errno))};
      log_size = static_cast<std::uint64_t>(st.st_size);
      return true;
    }
    std::string text;
    for (const auto& [id, e] : entries) {
      text += meta_json(e);
      text += '\n';
    }
    auto w = write_file_atomic(path, text, true);
    if (!w) return w.error();
    int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0) return Error{Errc::kIo, fmt::format("{}: {}", path, errno_text(errno))};
    if (log_fd >= 0) ::close(log_fd);
    log_fd = fd;
    log_size = text.size();
    log_lines = entries.size();
    return true;
  }

  // The metadata in one JSON object (a line of index.log, or an older version's .meta).
  static std::optional<CacheEntry> parse_meta(const json::object& o) {
    CacheEntry e;
    e.store = json_string(o, "store");
    e.key = json_string(o, "key");
    e.etag = json_string(o, "etag");
    e.sha256 = json_string(o, "sha256");
    e.size = json_number<std::uint64_t>(o, "size");
    e.fetched_at = json_number<std::int64_t>(o, "fetched_at");
    e.validated_at = json_number<std::int64_t>(o, "validated_at");
    const auto* pin = o.if_contains("pinned");
    e.pinned = pin && pin->is_bool() && pin->as_bool();
    if (e.key.empty()) return std::nullopt;
    return e;
  }

  void save_stats() const {
    json::object o;
    o["hits"] = counters.hits;
    o["misses"] = counters.misses;
    o["revalidated"] = counters.revalidated;
    o["evictions"] = counters.evictions;
    o["repaired"] = counters.repaired;
    o["refused_uploads"] = counters.refused_uploads;
    o["bytes"] = used;
    o["entries"] = entries.size();
    o["max_bytes"] = opt.max_bytes;
    (void)write_file_atomic(opt.dir + "/stats.json", json::serialize(o));
  }

  // The counters the last run left (its bytes and entries are recomputed by check()).
  void load_stats() {
    auto saved = saved_cache_stats(opt.dir);
    if (!saved) return;
    counters.hits = saved->hits;
    counters.misses = saved->misses;
    counters.revalidated = saved->revalidated;
    counters.evictions = saved->evictions;
    counters.repaired = saved->repaired;
    counters.refused_uploads = saved->refused_uploads;
  }

  // Reads index.log (and older versions' .meta files), keeps the entries whose data is
  // there and checks out, removes what a crash left half-done, and opens the log for
  // appending (rewritten first when it has grown, or was repaired).
  Result<bool> check() {
    std::error_code ec;
    // Downloads an older version's crash interrupted.
    for (auto it = fs::directory_iterator(opt.dir + "/tmp", ec);
         !ec && it != fs::directory_iterator(); it.increment(ec))
      ++counters.repaired;
    ec.clear();
    fs::remove_all(opt.dir + "/tmp", ec);
    fs::create_directories(opt.dir + "/objects", ec);
    if (ec) return Error{Errc::kIo, fmt::format("{}: {}", opt.dir, ec.message())};
    const std::string log_path = opt.dir + "/index.log";
    std::map<std::string, CacheEntry> logged;  // id -> its latest line
    std::uint64_t lines = 0;
    bool rewrite = false;
    {
      std::ifstream in(log_path, std::ios::binary);
      std::string line;
      while (std::getline(in, line)) {
        ++lines;
        boost::system::error_code jec;
        json::value v = json::parse(line, jec);
        if (jec || !v.is_object()) {  // torn by a power loss
          rewrite = true;
          continue;
        }
        const auto& o = v.as_object();
        if (const auto* gone = o.if_contains("gone")) {
          if (gone->is_string()) logged.erase(std::string(gone->as_string()));
          continue;
        }
        auto e = parse_meta(o);
        if (!e) {
          rewrite = true;
          continue;
        }
        logged[id_of(e->store, e->key)] = std::move(*e);
      }
    }
    // The files: data, older versions' metadata, and leftovers.
    std::map<std::string, std::string> data;  // id -> path
    std::vector<std::string> legacy;          // .meta files, folded into the log
    for (auto it = fs::recursive_directory_iterator(opt.dir + "/objects", ec);
         !ec && it != fs::end(it); it.increment(ec)) {
      if (!it->is_regular_file(ec)) continue;
      std::string path = it->path().string();
      std::string ext = it->path().extension().string();
      std::string id = it->path().stem().string();
      if (ext == ".data") {
        data[id] = path;
      } else if (ext == ".meta") {
        legacy.push_back(path);
        auto o = read_json_object(path);
        auto e = o ? parse_meta(*o) : std::nullopt;
        // (A bad one leaves its data without an entry: removed below.)
        if (e && id_of(e->store, e->key) == id && !logged.count(id)) logged[id] = std::move(*e);
      } else {  // a download or a metadata write a crash interrupted
        if (::unlink(path.c_str()) == 0) ++counters.repaired;
      }
    }
    if (ec) return Error{Errc::kIo, fmt::format("{}/objects: {}", opt.dir, ec.message())};
    std::vector<std::pair<std::int64_t, std::string>> order;  // data mtime, id
    for (auto& [id, e] : logged) {
      auto d = data.find(id);
      struct stat st {};
      bool ok = d != data.end() && ::stat(d->second.c_str(), &st) == 0 &&
                static_cast<std::uint64_t>(st.st_size) == e.size;
      if (ok) {
        e.path = d->second;
        e.last_access = st.st_mtim.tv_sec;
        // Written by a run that never synced, before a reboot: the bytes may not be there.
        if (dirty_since > 0 && std::max(e.fetched_at, e.validated_at) >= dirty_since - 1)
          ok = intact(e);
      }
      if (d != data.end()) {
        if (!ok) ::unlink(d->second.c_str());
        data.erase(d);
      }
      if (!ok) {
        ++counters.repaired;
        rewrite = true;
        continue;
      }
      order.emplace_back(st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec, id);
      used += e.size;
      entries[id] = std::move(e);
    }
    // Data whose entry never came (or was ended).
    for (const auto& [id, path] : data) {
      if (::unlink(path.c_str()) == 0) ++counters.repaired;
    }
    std::sort(order.begin(), order.end());
    for (const auto& [t, id] : order) touch(id);
    if (!order.empty()) last_stamp = order.back().first;
    log_lines = lines;
    auto compacted = compact(rewrite || !legacy.empty() || !fs::exists(log_path));
    if (!compacted) return compacted.error();
    for (const auto& path : legacy) ::unlink(path.c_str());
    return true;
  }

  Result<bool> lock() {
    if (::mkdir(opt.dir.c_str(), 0755) != 0 && errno != EEXIST) {
      std::error_code ec;
      fs::create_directories(opt.dir, ec);
      if (ec) return Error{Errc::kIo, fmt::format("cache folder {}: {}", opt.dir, ec.message())};
    }
    std::string path = opt.dir + "/.lock";
    lock_fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd < 0) return Error{Errc::kIo, fmt::format("{}: {}", path, errno_text(errno))};
    auto deadline = std::chrono::steady_clock::now() + from_seconds(opt.lock_wait_seconds);
    bool said = false;
    while (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
      if (errno != EWOULDBLOCK)
        return Error{Errc::kIo, fmt::format("{}: {}", path, errno_text(errno))};
      if (std::chrono::steady_clock::now() >= deadline)
        return Error{Errc::kIo,
                     fmt::format("the cache {} stayed in use by another process for {} s", opt.dir,
                                 opt.lock_wait_seconds)};
      if (!said) {
        std::fprintf(stderr, "waiting for the cache %s (in use by another hylab process)\n",
                     opt.dir.c_str());
        said = true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return true;
  }

  // Makes room for `size` more bytes: least recently used unpinned entries first. When
  // what is left is pinned or still downloading, waits for the downloads in flight (they
  // become evictable once done); fails only when nothing else could free room.
  Result<bool> reserve(std::unique_lock<std::mutex>& lk, std::uint64_t size,
                       const std::string& what) {
    if (size > opt.max_bytes)
      return Error{Errc::kIo, fmt::format("{} ({} bytes) is larger than the whole cache ({} bytes, "
                                          "storage.cache_max_size)",
                                          what, size, opt.max_bytes)};
    for (;;) {
      auto it = lru.begin();
      while (used + reserved + size > opt.max_bytes) {
        while (it != lru.end() && (entries[it->second].pinned || inflight.count(it->second))) ++it;
        if (it == lru.end()) break;
        std::string id = it->second;
        ++it;
        remove_files(id);
        forget(id);
        ++counters.evictions;
      }
      if (used + reserved + size <= opt.max_bytes) {
        reserved += size;
        return true;
      }
      if (reserved == 0) {
        std::uint64_t pinned = 0;
        for (const auto& [id, e] : entries) pinned += e.pinned ? e.size : 0;
        return Error{Errc::kIo,
                     fmt::format("the cache ({} bytes) cannot make room for {} ({} bytes): "
                                 "{} bytes are pinned",
                                 opt.max_bytes, what, size, pinned)};
      }
      cv.wait(lk);
    }
  }

  Result<Fetched> fetch(ObjectStore& store, const std::string& key, const FetchOptions& fo) {
    const std::string sid = store.cache_id();
    const std::string id = id_of(sid, key);
    const std::string what = store.describe() + "/" + key;
    std::unique_lock lk(mu);
    cv.wait(lk, [&] { return !inflight.count(id); });
    auto it = entries.find(id);
    std::optional<ObjectInfo> info;
    FetchKind kind = FetchKind::kDownloaded;
    bool keep_pin = false;  // a changed object's new version stays pinned
    if (it != entries.end()) {
      CacheEntry& e = it->second;
      std::int64_t t = now();
      if (opt.max_age_seconds > 0 && static_cast<double>(t - e.fetched_at) > opt.max_age_seconds &&
          !e.pinned) {
        remove_files(id);
        forget(id);
        ++counters.evictions;
      } else if (fo.known && !fo.known->etag.empty() && fo.known->etag != e.etag) {
        // The caller's listing or HEAD shows another version: the copy is stale, whatever
        // revalidate_after says. It goes now (as below), its pin stays.
        keep_pin = e.pinned;
        remove_files(id);
        forget(id);
      } else if (static_cast<double>(t - e.validated_at) < opt.revalidate_after_seconds) {
        ++counters.hits;
        if (fo.pin && !e.pinned) {
          e.pinned = true;
          (void)write_meta(e);
        }
        touch(id);
        return opened(lk, e, FetchKind::kHit);
      } else {
        inflight.insert(id);
        std::string etag = e.etag;
        lk.unlock();
        auto r = store.revalidate(key, etag);
        lk.lock();
        if (r && r->not_modified) {
          inflight.erase(id);
          cv.notify_all();
          auto again = entries.find(id);
          if (again == entries.end()) return Error{Errc::kInternal, what + ": entry vanished"};
          again->second.validated_at = now();
          if (fo.pin) again->second.pinned = true;
          (void)write_meta(again->second);
          ++counters.revalidated;
          touch(id);
          return opened(lk, again->second, FetchKind::kRevalidated);
        }
        if (!r) {
          inflight.erase(id);
          cv.notify_all();
          if (r.error().code == Errc::kNotFound) {  // gone upstream: gone here
            remove_files(id);
            forget(id);
          }
          return r.error();
        }
        info = *r;  // changed: download the new version below (still in flight)
        kind = FetchKind::kDownloaded;
        // The stale copy goes first: its bytes must not take the room its new version
        // needs (an object over half the cache could never be refreshed). Its pin stays.
        auto stale = entries.find(id);
        if (stale != entries.end()) {
          keep_pin = stale->second.pinned;
          remove_files(id);
          forget(id);
        }
      }
    }
    if (!inflight.count(id)) inflight.insert(id);
    ++counters.misses;
    auto done = [&](std::unique_lock<std::mutex>& l) {
      (void)l;
      inflight.erase(id);
      cv.notify_all();
    };
    if (!info && fo.known) info = *fo.known;  // the room is taken in this same hold of the lock
    if (!info) {
      lk.unlock();
      auto h = store.head(key);
      lk.lock();
      if (!h) {
        done(lk);
        return h.error();
      }
      info = *h;
    }
    auto room = reserve(lk, info->size, what);
    if (!room) {
      done(lk);
      return room.error();
    }
    lk.unlock();
    if (fo.on_size) fo.on_size(info->size);
    // The download lands beside its final name (a rename inside one folder: no
    // file-system-wide lock, as a rename across folders takes; and downloads spread over
    // 256 folders instead of contending for one). Not .data or .meta: opening the cache
    // deletes it if a crash leaves it.
    std::string tmp = fmt::format("{}.part{}", base_of(id), tmp_counter.fetch_add(1));
    made_folder(id);
    // Hash while downloading what the check will need (the store may not be able to; an S3
    // store chooses again from the answer's headers).
    Hasher hasher(check_for(info->sha256, info->etag));
    GetOptions go;
    go.progress = fo.progress;
    go.parallel = fo.parallel;
    go.hasher = &hasher;
    go.known = &*info;
    auto got = store.get(key, tmp, go);
    Result<bool> checked =
        got ? check_download(tmp, *got, *info, what, hasher) : Result<bool>(got.error());
    // From here to the entry's insertion without the lock (other downloads go on
    // meanwhile, and each lock taken with many threads on few cores risks a holder put to
    // sleep with it): the id is in flight, so nothing else touches it, and the old entry
    // (if any) and the reservation both stay counted until the new entry is in, so the
    // bound holds throughout.
    Result<bool> committed = checked;
    CacheEntry e;
    int fd = -1;
    bool unlisted_mine = false;
    if (committed) {
      // The object may have changed since the listing: what was downloaded is the truth.
      e.store = sid;
      e.key = key;
      e.etag = got->etag.empty() ? info->etag : got->etag;
      e.sha256 = got->sha256.empty() ? info->sha256 : got->sha256;
      e.size = got->size;
      e.fetched_at = e.validated_at = now();
      e.last_access = e.fetched_at;
      e.path = base_of(id) + ".data";
      e.pinned = fo.pin || keep_pin;  // (in flight: no one else can have pinned it)
      // The data into place (any older entry of this id has already ended), then its
      // line. Opened first: the reader's descriptor needs no lookup later.
      fd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0 || ::rename(tmp.c_str(), e.path.c_str()) != 0) {
        committed = Error{Errc::kIo, fmt::format("{}: {}", e.path, errno_text(errno))};
      } else {
        // Written before the entry is in: no eviction can end it before its line, and a
        // rewrite of the log waits until it is in (see compact()).
        ++unlisted;
        unlisted_mine = true;
        committed = write_meta(e);
        if (!committed) ::unlink(e.path.c_str());
      }
    }
    if (!committed) {
      ::unlink(tmp.c_str());
      if (fd >= 0) ::close(fd);
    }
    lk.lock();
    reserved -= info->size;
    forget(id);  // the old entry, if any: its files are gone or replaced
    if (!committed) {
      if (unlisted_mine) --unlisted;
      done(lk);
      return committed.error();
    }
    used += e.size;
    entries[id] = e;
    touch(id);
    --unlisted;
    (void)compact(false);
    done(lk);
    // An object that grew between listing and download may have pushed the cache over
    // its bound: evict now (never leave it over).
    if (used > opt.max_bytes) {
      auto shrink = reserve(lk, 0, what);
      (void)shrink;
    }
    return stamped(lk, e, kind, fd);
  }

  // Opened under the lock, so an eviction right after cannot take the bytes away from the
  // reader (an unlinked file stays readable through its descriptor).
  Result<Fetched> opened(std::unique_lock<std::mutex>& lk, const CacheEntry& e, FetchKind kind) {
    int fd = ::open(e.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Error{Errc::kIo, fmt::format("{}: {}", e.path, errno_text(errno))};
    return stamped(lk, e, kind, fd);
  }

  // The modification time orders eviction across restarts. Set explicitly and strictly
  // increasing: a file's clock ticks coarsely (reads within one tick would tie, and a
  // coarse stamp can even fall behind a fine one set just before), so "now" alone would
  // not keep the order of reads. The stamp is taken under the lock; the lock is released
  // before it is written (other fetches need not wait on the file system).
  Result<Fetched> stamped(std::unique_lock<std::mutex>& lk, const CacheEntry& e, FetchKind kind,
                          int fd) {
    struct timespec ts[2]{};
    ::clock_gettime(CLOCK_REALTIME, &ts[1]);
    std::int64_t stamp = static_cast<std::int64_t>(ts[1].tv_sec) * 1000000000 + ts[1].tv_nsec;
    last_stamp = std::max(stamp, last_stamp + 1);
    stamp = last_stamp;
    Fetched f{e, kind, std::make_shared<FileHandle>(fd)};
    lk.unlock();
    ts[0].tv_nsec = UTIME_NOW;
    ts[1].tv_sec = static_cast<time_t>(stamp / 1000000000);
    ts[1].tv_nsec = static_cast<long>(stamp % 1000000000);
    ::futimens(fd, ts);
    return f;
  }
};

std::string default_cache_dir(const std::string& configured) {
  if (!configured.empty()) return configured;
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg && *xdg) return std::string(xdg) + "/hylab";
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "") + "/.cache/hylab";
}

std::optional<CacheStats> saved_cache_stats(const std::string& dir) {
  auto o = read_json_object(dir + "/stats.json");
  if (!o) return std::nullopt;
  auto get = [&](const char* k) { return json_number<std::uint64_t>(*o, k); };
  CacheStats s;
  s.bytes = get("bytes");
  s.entries = get("entries");
  s.max_bytes = get("max_bytes");
  s.hits = get("hits");
  s.misses = get("misses");
  s.revalidated = get("revalidated");
  s.evictions = get("evictions");
  s.repaired = get("repaired");
  s.refused_uploads = get("refused_uploads");
  return s;
}

Cache::Cache(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Cache::~Cache() = default;

Result<std::unique_ptr<Cache>> Cache::open(CacheOptions opt) {
  if (opt.dir.empty()) return invalid_input("storage.cache_dir is not set");
  if (opt.max_bytes == 0) return invalid_input("storage.cache_max_size must be more than 0");
  auto impl = std::make_unique<Impl>();
  impl->opt = std::move(opt);
  auto locked = impl->lock();
  if (!locked) return locked.error();
  impl->locked = true;
  impl->load_stats();
  impl->read_state();
  auto checked = impl->check();
  if (!checked) return checked.error();
  auto state = impl->write_state();
  if (!state) return state.error();
  // A smaller bound than last time: shrink now.
  {
    std::unique_lock lk(impl->mu);
    if (impl->used > impl->opt.max_bytes) (void)impl->reserve(lk, 0, "the cache");
  }
  return std::unique_ptr<Cache>(new Cache(std::move(impl)));
}

Result<Fetched> Cache::fetch(ObjectStore& store, const std::string& key, const FetchOptions& opt) {
  return impl_->fetch(store, key, opt);
}

Result<std::size_t> Cache::pin(const std::string& store, const std::string& prefix, bool pinned) {
  std::lock_guard lk(impl_->mu);
  std::size_t n = 0;
  for (auto& [id, e] : impl_->entries) {
    if ((!store.empty() && e.store != store) || e.key.rfind(prefix, 0) != 0 || e.pinned == pinned)
      continue;
    e.pinned = pinned;
    auto w = impl_->write_meta(e);
    if (!w) return w.error();
    ++n;
  }
  return n;
}

Result<std::uint64_t> Cache::evict(const std::string& store, const std::string& prefix,
                                   bool force) {
  std::lock_guard lk(impl_->mu);
  std::vector<std::string> ids;
  for (const auto& [id, e] : impl_->entries) {
    if ((!store.empty() && e.store != store) || e.key.rfind(prefix, 0) != 0) continue;
    if (e.pinned && !force) continue;
    if (impl_->inflight.count(id)) continue;
    ids.push_back(id);
  }
  std::uint64_t freed = 0;
  for (const auto& id : ids) {
    freed += impl_->entries[id].size;
    impl_->remove_files(id);
    impl_->forget(id);
    ++impl_->counters.evictions;
  }
  (void)impl_->compact(false);
  return freed;
}

CacheStats Cache::stats() const {
  std::lock_guard lk(impl_->mu);
  CacheStats s = impl_->counters;
  s.bytes = impl_->used;
  s.max_bytes = impl_->opt.max_bytes;
  s.entries = impl_->entries.size();
  for (const auto& [id, e] : impl_->entries) s.pinned_bytes += e.pinned ? e.size : 0;
  return s;
}

std::vector<CacheEntry> Cache::entries() const {
  std::lock_guard lk(impl_->mu);
  std::vector<CacheEntry> out;
  for (auto it = impl_->lru.rbegin(); it != impl_->lru.rend(); ++it)
    out.push_back(impl_->entries.at(it->second));
  return out;
}

void Cache::count_refused(std::uint64_t n) {
  std::lock_guard lk(impl_->mu);
  impl_->counters.refused_uploads += n;
}

const CacheOptions& Cache::options() const { return impl_->opt; }

}  // namespace hylab::storage
