// The disk cache (see cache.h for the guarantees). Layout under the cache folder:
//   .lock                      flock held while a process has the cache open
//   objects/XY/ID.data         the object's bytes (ID: sha256 of store and key)
//   objects/XY/ID.partN        a download in progress (deleted when the cache opens)
//   packs/NAME.pack            small objects (up to pack_max_bytes), appended one after
//                              another; each entry's line names its pack and offset
//   index.log                  the entries' metadata, one JSON line per change: an entry
//                              (store, key, etag, sha256, size, times, pinned) or
//                              {"gone": ID}; the last line of an ID wins
//   stats.json                 counters kept across runs
//   state.json                 since when writes may be unsynced, and in which boot
// An entry exists when its data file is there and its latest line in index.log names it.
// Replacing an entry writes its "gone" line first, then renames the new data into place,
// then appends the new line: a crash in between leaves data without an entry, which
// opening the cache deletes.
// Packs: one file for thousands of small objects (a new inode, its directory entry and a
// rename cost more than a small object's bytes; with many threads they also contend for
// the folder's lock). A download appends to a pack that no other download uses meanwhile
// (taken from a free list), past every entry in it; a failed one is cut off again, and one
// a crash interrupted is cut off at open (the pack ends with its last entry). An evicted
// entry's bytes are freed with a hole (fallocate PUNCH_HOLE): at once, or once the last
// handle reading them closes; a pack with no entries left is deleted. A packed entry's
// last use is a line in the log ({"use": ID, "at": NS}), not a file's mtime. Each line is one
// write() to a file opened for appending (a killed process cannot cut it; a line torn by a power
// loss does not parse and is skipped). Opening the cache rewrites the log with only the live
// entries when it has grown to more than twice their number, and so does a long-running process.
// One log instead of a metadata file per entry: an entry costs one inode, not two (new
// inodes dominate the time of downloading many small objects), and opening the cache
// reads one file. Older versions' objects/XY/ID.meta files are read once and folded in;
// their tmp/ folder is emptied. (Metadata in an xattr was measured slower still: ext4
// gives a value this size its own block per file.)
#include "storage/cache.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/falloc.h>
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

// Frees `len` bytes of a pack from `offset` (a hole: the file keeps its size and offsets).
// A file system without holes keeps the bytes until the pack is deleted.
void punch(const std::string& path, std::uint64_t offset, std::uint64_t len) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;  // the pack is gone: nothing to free
  (void)::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                    static_cast<off_t>(len));
  ::close(fd);
}

// Can files in `dir` get holes? A nameless 8 KiB file, its first 4 KiB punched.
bool holes_work(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  std::string named;
  if (fd < 0) {  // (no O_TMPFILE here: a named probe)
    named = dir + "/.holes-probe";
    fd = ::open(named.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return false;
    ::unlink(named.c_str());
  }
  char block[8192] = {1};
  bool ok = ::pwrite(fd, block, sizeof block, 0) == static_cast<ssize_t>(sizeof block) &&
            ::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096) == 0;
  ::close(fd);
  return ok;
}

// Handles open on packed entries, and the entries evicted while one was: their bytes are
// freed when the last handle closes. Shared with the handles, which may outlive the cache.
struct PackReaders {
  using Range = std::pair<std::string, std::uint64_t>;  // pack path, offset
  std::mutex mu;
  std::map<Range, int> open;
  std::map<Range, std::uint64_t> doomed;  // -> length to free

  void closed(const Range& r) {
    std::uint64_t len = 0;
    {
      std::lock_guard g(mu);
      auto it = open.find(r);
      if (it == open.end() || --it->second > 0) return;
      open.erase(it);
      auto d = doomed.find(r);
      if (d == doomed.end()) return;
      len = d->second;
      doomed.erase(d);
    }
    punch(r.first, r.second, len);
  }
};

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
  bool locked = false;                      // the folder's flock is ours: only then write into it
  std::atomic<std::int64_t> last_stamp{0};  // the latest use stamped, in ns (see stamped())

  std::int64_t dirty_since = 0;  // entries written after this may not be on the disk
  // index.log, open for appending. log_mu guards it and the two counts; taken after mu
  // where both are held (a new entry's line is written without mu: a write can wait on the
  // file system's journal, and every other fetch would wait with it).
  std::mutex log_mu;
  int log_fd = -1;
  std::uint64_t log_size = 0;               // its bytes: a failed append is cut back to this
  std::atomic<std::uint64_t> log_lines{0};  // its lines: rewritten when far more than the entries
  std::atomic<int> unlisted{0};  // new entries whose line is written but which are not in yet

  // Packs (see the top of this file). A pack's fd and size belong to the download that has
  // it busy; everything else, and the map, under mu.
  struct Pack {
    std::string path;
    int fd = -1;             // open while it takes appends
    std::uint64_t size = 0;  // where the next download starts
    std::uint64_t live = 0;  // bytes of its entries
    bool busy = false;       // a download is appending to it
    bool full = false;       // takes no more appends
  };
  static constexpr std::uint64_t kPackFull = 64ULL << 20;
  std::map<std::string, Pack> packs;  // by path
  std::vector<Pack*> idle;            // taking appends, not busy
  std::atomic<unsigned> pack_counter{0};
  std::shared_ptr<PackReaders> readers = std::make_shared<PackReaders>();

  ~Impl() {
    if (locked) save_stats();
    for (auto& [path, p] : packs)
      if (p.fd >= 0) ::close(p.fd);
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
    return hash_file(e.path, h, e.offset, e.size) && digest_mismatch(h, e.sha256, e.etag).empty();
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
    auto e = entries.find(id);
    if (e != entries.end() && e->second.packed) {
      release(e->second);
    } else {
      ::unlink((base_of(id) + ".data").c_str());
    }
  }

  // A packed entry's bytes: freed now, or when the last handle reading them closes; its
  // pack deleted once it holds no entry. (Under mu.)
  void release(const CacheEntry& e) {
    auto it = packs.find(e.path);
    if (it == packs.end()) return;
    Pack& p = it->second;
    p.live -= std::min(p.live, e.size);
    if (p.live == 0 && !p.busy) {
      drop_pack(it);  // (handles still open keep reading the unlinked file)
      return;
    }
    {
      std::lock_guard g(readers->mu);
      PackReaders::Range r{e.path, e.offset};
      if (readers->open.count(r)) {
        readers->doomed[r] = e.size;
        return;
      }
    }
    punch(e.path, e.offset, e.size);
  }

  void drop_pack(std::map<std::string, Pack>::iterator it) {
    ::unlink(it->first.c_str());
    if (it->second.fd >= 0) ::close(it->second.fd);
    idle.erase(std::remove(idle.begin(), idle.end(), &it->second), idle.end());
    packs.erase(it);
  }

  // A pack for one download to append to, busy until given back. (Under mu.)
  Pack* take_pack() {
    Pack* p = nullptr;
    if (!idle.empty()) {
      p = idle.back();
      idle.pop_back();
    } else {
      struct timespec ts {};
      ::clock_gettime(CLOCK_REALTIME, &ts);
      // Never the name of an earlier pack: a handle that outlives a deleted one frees its
      // bytes by name.
      std::string path = fmt::format("{}/packs/{:x}{:09}-{}-{}.pack", opt.dir, ts.tv_sec,
                                     ts.tv_nsec, ::getpid(), pack_counter.fetch_add(1));
      p = &packs[path];
      p->path = path;
    }
    p->busy = true;
    return p;
  }

  // Back from a download, which appended `added` bytes of a new entry (0: none). (Under mu.)
  void give_back(Pack* p, std::uint64_t added) {
    p->busy = false;
    p->live += added;
    auto it = packs.find(p->path);
    if (p->live == 0) {
      drop_pack(it);
      return;
    }
    if (p->full || p->size >= kPackFull || p->fd < 0) {
      p->full = true;
      if (p->fd >= 0) ::close(p->fd);
      p->fd = -1;
      return;
    }
    idle.push_back(p);
  }

  // A handle on a packed entry's bytes, counted until it closes. (Under mu.)
  std::shared_ptr<FileHandle> pack_handle(const CacheEntry& e, int fd) {
    PackReaders::Range r{e.path, e.offset};
    {
      std::lock_guard g(readers->mu);
      ++readers->open[r];
    }
    return std::make_shared<FileHandle>(fd, e.offset, e.size, [rd = readers, r] { rd->closed(r); });
  }

  // A strictly increasing stamp from the real-time clock (see stamped()).
  std::int64_t next_stamp() {
    struct timespec ts {};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    std::int64_t t = static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
    std::int64_t last = last_stamp.load();
    while (!last_stamp.compare_exchange_weak(last, std::max(t, last + 1))) {
    }
    return std::max(t, last + 1);
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
    if (e.packed) {
      o["pack"] = fs::path(e.path).filename().string();
      o["offset"] = e.offset;
      o["at"] = e.access_ns;
    }
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
    std::string pack = json_string(o, "pack");
    if (!pack.empty()) {
      // (A name, never a path: a line cannot point outside packs/.)
      if (pack.find('/') != std::string::npos || pack == "." || pack == "..") return std::nullopt;
      e.packed = true;
      e.path = pack;  // made a path by check()
      e.offset = json_number<std::uint64_t>(o, "offset");
      e.access_ns = json_number<std::int64_t>(o, "at");
    }
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
    if (!ec) fs::create_directories(opt.dir + "/packs", ec);
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
        if (const auto* use = o.if_contains("use")) {  // a packed entry's last use
          auto it = use->is_string() ? logged.find(std::string(use->as_string())) : logged.end();
          if (it != logged.end()) it->second.access_ns = json_number<std::int64_t>(o, "at");
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
    struct PackFile {
      std::uint64_t size = 0, blocks = 0, end = 0;                  // end: of its last entry
      std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;  // its entries
    };
    std::map<std::string, PackFile> pack_files;  // by path
    for (auto it = fs::directory_iterator(opt.dir + "/packs", ec);
         !ec && it != fs::directory_iterator(); it.increment(ec)) {
      std::string path = it->path().string();
      struct stat st {};
      if (it->path().extension() != ".pack" || ::stat(path.c_str(), &st) != 0) {
        if (::unlink(path.c_str()) == 0) ++counters.repaired;
        continue;
      }
      pack_files[path] = {static_cast<std::uint64_t>(st.st_size),
                          static_cast<std::uint64_t>(st.st_blocks) * 512,
                          0,
                          {}};
    }
    if (ec) return Error{Errc::kIo, fmt::format("{}/packs: {}", opt.dir, ec.message())};
    std::vector<std::pair<std::int64_t, std::string>> order;  // last use in ns, id
    for (auto& [id, e] : logged) {
      if (e.packed) {
        e.path = opt.dir + "/packs/" + e.path;
        auto pf = pack_files.find(e.path);
        bool ok = pf != pack_files.end() && e.offset + e.size <= pf->second.size;
        // Written by a run that never synced, before a reboot: the bytes may not be there.
        if (ok && dirty_since > 0 && std::max(e.fetched_at, e.validated_at) >= dirty_since - 1)
          ok = intact(e);
        if (!ok) {  // (its bytes, if any, are freed below with the pack's other gaps)
          ++counters.repaired;
          rewrite = true;
          continue;
        }
        pf->second.end = std::max(pf->second.end, e.offset + e.size);
        pf->second.ranges.emplace_back(e.offset, e.size);
        e.last_access = e.access_ns / 1000000000;
        order.emplace_back(e.access_ns, id);
        used += e.size;
        entries[id] = std::move(e);
        continue;
      }
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
    // Packs: deleted with no entry left; cut back to their last entry (a download a crash
    // interrupted); bytes between entries that are still on the disk (entries a crash
    // kept from their line or from their hole) freed; taking appends again when not full.
    for (auto& [path, pf] : pack_files) {
      if (pf.ranges.empty()) {
        if (::unlink(path.c_str()) == 0) ++counters.repaired;
        continue;
      }
      bool cut = true;
      if (pf.size > pf.end) {
        cut = ::truncate(path.c_str(), static_cast<off_t>(pf.end)) == 0;
        if (cut) ++counters.repaired;
      }
      std::uint64_t live = 0;
      for (const auto& [off, len] : pf.ranges) live += len;
      int fd = pf.blocks > live + 8192 * (pf.ranges.size() + 1)
                   ? ::open(path.c_str(), O_WRONLY | O_CLOEXEC)
                   : -1;
      if (fd >= 0) {  // (checked only when the pack holds more on the disk than its entries)
        std::sort(pf.ranges.begin(), pf.ranges.end());
        std::uint64_t at = 0;
        for (const auto& [off, len] : pf.ranges) {
          auto from = static_cast<off_t>((at + 4095) / 4096 * 4096);
          auto to = static_cast<off_t>(off / 4096 * 4096);
          off_t data_at = to > from ? ::lseek(fd, from, SEEK_DATA) : -1;
          if (data_at >= 0 && data_at < to &&
              ::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, from, to - from) == 0)
            ++counters.repaired;
          at = std::max(at, off + len);
        }
        ::close(fd);
      }
      Pack& p = packs[path];
      p.path = path;
      p.size = pf.end;
      p.live = live;
      p.full = !cut || pf.end >= kPackFull;  // (uncut: a download would not end the pack)
      if (!p.full) idle.push_back(&p);
    }
    std::sort(order.begin(), order.end());
    for (const auto& [t, id] : order) touch(id);
    if (!order.empty()) last_stamp = std::max(last_stamp.load(), order.back().first);
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
        return opened(lk, id, e, FetchKind::kHit);
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
          return opened(lk, id, again->second, FetchKind::kRevalidated);
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
    // A small object goes to the end of a pack that only this download appends to.
    Pack* pack = opt.pack_max_bytes > 0 && info->size <= opt.pack_max_bytes ? take_pack() : nullptr;
    lk.unlock();
    if (fo.on_size) fo.on_size(info->size);
    // Otherwise the download lands beside its final name (a rename inside one folder: no
    // file-system-wide lock, as a rename across folders takes; and downloads spread over
    // 256 folders instead of contending for one). Not .data or .meta: opening the cache
    // deletes it if a crash leaves it.
    std::string tmp;
    std::uint64_t at = 0;  // in the pack
    // Hash while downloading what the check will need (the store may not be able to; an S3
    // store chooses again from the answer's headers).
    Hasher hasher(check_for(info->sha256, info->etag));
    GetOptions go;
    go.progress = fo.progress;
    go.parallel = fo.parallel;
    go.hasher = &hasher;
    go.known = &*info;
    go.tee_fd = fo.tee_fd;
    Result<ObjectInfo> got = Error{Errc::kInternal, "not downloaded"};
    if (pack) {
      tmp = pack->path;
      if (pack->fd < 0) pack->fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
      if (pack->fd < 0) {
        got = Error{Errc::kIo, fmt::format("{}: {}", tmp, errno_text(errno))};
      } else {
        at = pack->size;
        go.dest_fd = pack->fd;
        go.dest_offset = at;
        got = store.get(key, tmp, go);
      }
    } else {
      tmp = fmt::format("{}.part{}", base_of(id), tmp_counter.fetch_add(1));
      made_folder(id);
      got = store.get(key, tmp, go);
    }
    Result<bool> checked =
        got ? check_download(tmp, *got, *info, what, hasher, at) : Result<bool>(got.error());
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
      e.pinned = fo.pin || keep_pin;  // (in flight: no one else can have pinned it)
      if (pack) {
        e.packed = true;
        e.path = pack->path;
        e.offset = at;
        e.access_ns = next_stamp();
      } else {
        e.path = base_of(id) + ".data";
      }
      // The data into place (any older entry of this id has already ended), then its
      // line. Opened first: the reader's descriptor needs no lookup later.
      fd = pack ? ::dup(pack->fd) : ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0 || (!pack && ::rename(tmp.c_str(), e.path.c_str()) != 0)) {
        committed = Error{Errc::kIo, fmt::format("{}: {}", e.path, errno_text(errno))};
      } else {
        // Written before the entry is in: no eviction can end it before its line, and a
        // rewrite of the log waits until it is in (see compact()).
        ++unlisted;
        unlisted_mine = true;
        committed = write_meta(e);
        if (!committed && !pack) ::unlink(e.path.c_str());
      }
    }
    if (!committed) {
      if (!pack) ::unlink(tmp.c_str());
      if (fd >= 0) ::close(fd);
    }
    if (pack && pack->fd >= 0) {
      // (Checked: the pack ends with the new entry.) A failed download is cut off again;
      // should the cut fail, the pack takes no more.
      if (!committed && ::ftruncate(pack->fd, static_cast<off_t>(at)) != 0) pack->full = true;
      pack->size = committed ? at + e.size : at;
    }
    lk.lock();
    if (pack) give_back(pack, committed ? e.size : 0);
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
    auto handle = e.packed ? pack_handle(e, fd) : std::make_shared<FileHandle>(fd);
    // An object that grew between listing and download may have pushed the cache over
    // its bound: evict now (never leave it over).
    if (used > opt.max_bytes) {
      auto shrink = reserve(lk, 0, what);
      (void)shrink;
    }
    const bool teed = fo.tee_fd >= 0;
    if (e.packed) return Fetched{e, kind, std::move(handle), teed};  // its line has its use
    auto r = stamped(lk, id, e, kind, std::move(handle));
    if (r) r->teed = teed;
    return r;
  }

  // Opened under the lock, so an eviction right after cannot take the bytes away from the
  // reader (an unlinked file stays readable through its descriptor; a packed entry's bytes
  // are freed only when its last handle closes).
  Result<Fetched> opened(std::unique_lock<std::mutex>& lk, const std::string& id,
                         const CacheEntry& e, FetchKind kind) {
    int fd = ::open(e.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Error{Errc::kIo, fmt::format("{}: {}", e.path, errno_text(errno))};
    if (e.packed) (void)compact(false);  // (each use of a packed entry adds a line)
    return stamped(lk, id, e, kind,
                   e.packed ? pack_handle(e, fd) : std::make_shared<FileHandle>(fd));
  }

  // The last use orders eviction across restarts: a data file's modification time, or a
  // packed entry's "use" line. Set explicitly and strictly increasing: a file's clock ticks
  // coarsely (reads within one tick would tie, and a coarse stamp can even fall behind a
  // fine one set just before), so "now" alone would not keep the order of reads. The stamp
  // is taken under the lock; the lock is released before it is written (other fetches need
  // not wait on the file system).
  Result<Fetched> stamped(std::unique_lock<std::mutex>& lk, const std::string& id,
                          const CacheEntry& e, FetchKind kind, std::shared_ptr<FileHandle> handle) {
    std::int64_t stamp = next_stamp();
    Fetched f{e, kind, std::move(handle)};
    if (e.packed) {
      f.entry.access_ns = stamp;
      auto it = entries.find(id);
      if (it != entries.end()) it->second.access_ns = stamp;
    }
    lk.unlock();
    if (e.packed) {
      json::object o;
      o["use"] = id;
      o["at"] = stamp;
      (void)append(json::serialize(o));
      return f;
    }
    struct timespec ts[2]{};
    ts[0].tv_nsec = UTIME_NOW;
    ts[1].tv_sec = static_cast<time_t>(stamp / 1000000000);
    ts[1].tv_nsec = static_cast<long>(stamp % 1000000000);
    ::futimens(f.file->fd(), ts);
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
  // Packs need holes to free an evicted object's bytes (NFS before 4.2 and CIFS have none,
  // for one): without them, a file each, and the bound holds on the disk.
  auto holes = impl->opt.holes_work ? impl->opt.holes_work : holes_work;
  if (impl->opt.pack_max_bytes > 0 && !holes(impl->opt.dir + "/packs"))
    impl->opt.pack_max_bytes = 0;
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
