// The disk cache in front of a real fs store, in temporary folders, with an injected clock:
// hits and misses, single-flight (many readers of one missing object, one download), the hard
// byte bound and LRU order, objects larger than the cache, pinning, evict(prefix/force),
// maximum age, revalidation (hit, conditional HEAD, re-download of a changed object, an object
// gone upstream), integrity checks (sha256 and MD5 ETags, faults injected by a decorator store),
// crash leftovers repaired at open, the folder lock, and what survives a reopen (entries, LRU
// order, counters, refused uploads).
#include "storage/cache.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "storage/file_util.h"
#include "storage/object_store.h"
#include "storage/sigv4.h"

namespace hylab::storage {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr std::int64_t kT0 = 1'700'000'000;

// A fresh folder under the system's temporary folder, removed with its owner.
class TempDir {
 public:
  TempDir() {
    static std::atomic<unsigned> counter{0};
    std::random_device rd;
    path_ = fs::temp_directory_path() /
            ("hylab-cache-test-" + std::to_string(::getpid()) + "-" +
             std::to_string(counter.fetch_add(1)) + "-" + std::to_string(rd()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// The real fs store, counting calls; it can lie about an object to cause the faults that a
// real store cannot (a sha256 or an MD5 ETag that does not match the bytes).
class CountingStore final : public ObjectStore {
 public:
  explicit CountingStore(const std::string& root) : inner_(make_fs_store(root)) {}

  std::string describe() const override { return inner_->describe(); }
  std::string cache_id() const override { return inner_->cache_id(); }
  Result<ObjectInfo> head(const std::string& key) override {
    ++heads;
    auto r = inner_->head(key);
    if (r && !head_sha256.empty()) r->sha256 = head_sha256;
    return r;
  }
  Result<ObjectInfo> revalidate(const std::string& key, const std::string& etag) override {
    ++revalidates;
    return inner_->revalidate(key, etag);
  }
  Result<ObjectInfo> get(const std::string& key, const std::string& dest,
                         const GetOptions& opt) override {
    ++gets;
    if (before_get) before_get(key);
    auto r = inner_->get(key, dest, opt);
    if (r && !get_etag.empty()) r->etag = get_etag;
    return r;
  }
  Result<ObjectInfo> put(const std::string& key, const std::string& src,
                         const PutOptions& opt) override {
    return inner_->put(key, src, opt);
  }
  Result<std::vector<ObjectInfo>> list(const std::string& prefix) override {
    return inner_->list(prefix);
  }
  Result<bool> remove(const std::string& key) override { return inner_->remove(key); }

  int calls() const { return heads + revalidates + gets; }

  std::atomic<int> heads{0}, revalidates{0}, gets{0};
  // Set while no fetch runs.
  std::string head_sha256;  // reported by head() when set
  std::string get_etag;     // reported by get() when set
  std::function<void(const std::string& key)> before_get;

 private:
  std::unique_ptr<ObjectStore> inner_;
};

std::string read_fd(int fd) {
  std::string out;
  char buf[4096];
  for (off_t off = 0;;) {
    ssize_t n = ::pread(fd, buf, sizeof buf, off);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
    off += n;
  }
  return out;
}

// The handle's bytes: the whole file, or a packed entry's range of its pack.
std::string contents(const Fetched& f) {
  if (!f.file) return "";
  std::string all = read_fd(f.file->fd());
  if (f.file->offset() > all.size()) return "";
  return all.substr(f.file->offset(), f.file->length());
}

std::string read_path(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string hex_digest(const std::string& data, bool sha256) {
  Hasher h(sha256, !sha256);
  h.update(data.data(), data.size());
  h.finish();
  return sha256 ? h.sha256() : h.md5();
}

// Every case runs twice: entries in a file each (pack_max_bytes 0) and packed together.
class CacheTest : public ::testing::TestWithParam<bool> {
 protected:
  bool packed() const { return GetParam(); }

  void SetUp() override {
    store_dir_ = tmp_.path() / "store";
    cache_dir_ = tmp_.path() / "cache";
    fs::create_directories(store_dir_);
    store_ = std::make_unique<CountingStore>(store_dir_.string());
  }

  CacheOptions options(std::uint64_t max_bytes) {
    CacheOptions o;
    o.dir = cache_dir_.string();
    o.max_bytes = max_bytes;
    o.revalidate_after_seconds = 1e9;
    o.lock_wait_seconds = 0.2;
    o.now = [this] { return now_.load(); };
    o.pack_max_bytes = packed() ? 1 << 20 : 0;
    return o;
  }

  std::unique_ptr<Cache> open(const CacheOptions& o) {
    auto c = Cache::open(o);
    EXPECT_TRUE(c) << c.error().message;
    return c ? std::move(*c) : nullptr;
  }
  std::unique_ptr<Cache> open(std::uint64_t max_bytes) { return open(options(max_bytes)); }

  // Writes an object of the store (a file below its folder).
  void put(const std::string& key, const std::string& data) {
    fs::path p = store_dir_ / key;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary | std::ios::trunc) << data;
  }

  // Fetches and checks that it worked; returns the result for more checks.
  Fetched fetch_ok(Cache& c, const std::string& key, const FetchOptions& fo = {}) {
    auto r = c.fetch(*store_, key, fo);
    EXPECT_TRUE(r) << key << ": " << r.error().message;
    return r ? *r : Fetched{};
  }

  // The stored entries' bytes: every *.data file under the cache folder, and the ranges of
  // packs that the log's live entries name (each checked to be inside its pack).
  std::uint64_t data_bytes() const {
    std::uint64_t total = 0;
    for (const auto& e : fs::recursive_directory_iterator(cache_dir_)) {
      if (e.is_regular_file() && e.path().extension() == ".data") total += e.file_size();
    }
    for (const auto& [id, o] : logged_packed()) total += o.at("size").to_number<std::uint64_t>();
    return total;
  }
  // Entries stored: data files, and live packed entries.
  std::size_t stored_entries() const {
    return files_with_extension(".data") + logged_packed().size();
  }
  // The log's live packed entries whose range lies inside their pack, by id.
  std::map<std::string, boost::json::object> logged_packed() const {
    auto live = logged_entries();
    std::erase_if(live, [&](const std::pair<const std::string, boost::json::object>& item) {
      const auto& o = item.second;
      if (!o.contains("pack")) return true;
      std::error_code ec;
      auto size = fs::file_size(cache_dir_ / "packs" / std::string(o.at("pack").as_string()), ec);
      return ec ||
             o.at("offset").to_number<std::uint64_t>() + o.at("size").to_number<std::uint64_t>() >
                 size;
    });
    return live;
  }
  // index.log's lines, and what it says at its end: each id's last entry line (a "gone" line
  // ends it; lines that do not parse count for nothing), and their keys.
  std::vector<std::string> log_lines() const {
    std::vector<std::string> out;
    std::ifstream in(cache_dir_ / "index.log");
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
  }
  std::map<std::string, boost::json::object> logged_entries() const {
    std::map<std::string, boost::json::object> live;  // by id
    for (const auto& line : log_lines()) {
      boost::system::error_code ec;
      auto v = boost::json::parse(line, ec);
      if (ec || !v.is_object()) continue;
      const auto& o = v.as_object();
      if (const auto* gone = o.if_contains("gone")) {
        live.erase(std::string(gone->as_string()));
      } else if (o.contains("key") && o.contains("store")) {
        std::string store(o.at("store").as_string()), key(o.at("key").as_string());
        live[sha256_hex(store + "\n" + key).substr(0, 40)] = o;
      }
    }
    return live;
  }
  std::set<std::string> logged_keys() const {
    std::set<std::string> keys;
    for (const auto& [id, o] : logged_entries()) keys.insert(std::string(o.at("key").as_string()));
    return keys;
  }
  // Rewrites index.log without the lines of `key`.
  void drop_log_lines(const std::string& key) {
    std::string text;
    for (const auto& line : log_lines()) {
      if (line.find("\"key\":\"" + key + "\"") == std::string::npos) text += line + "\n";
    }
    std::ofstream(cache_dir_ / "index.log", std::ios::trunc) << text;
  }
  std::size_t files_with_extension(const std::string& ext) const {
    std::size_t n = 0;
    for (const auto& e : fs::recursive_directory_iterator(cache_dir_ / "objects")) {
      if (e.is_regular_file() && e.path().extension() == ext) ++n;
    }
    return n;
  }
  // Downloads in progress: objects/XY/ID.partN (and tmp/, where older versions put them).
  std::size_t tmp_files() const {
    std::size_t n = 0;
    for (const char* dir : {"tmp", "objects"}) {
      if (!fs::exists(cache_dir_ / dir)) continue;
      for (const auto& e : fs::recursive_directory_iterator(cache_dir_ / dir)) {
        if (e.is_regular_file() &&
            (dir == std::string("tmp") || e.path().extension().string().starts_with(".part")))
          ++n;
      }
    }
    return n;
  }

  static std::set<std::string> keys_of(const Cache& c) {
    std::set<std::string> out;
    for (const auto& e : c.entries()) out.insert(e.key);
    return out;
  }
  // Most recently used first.
  static std::vector<std::string> lru_keys(const Cache& c) {
    std::vector<std::string> out;
    for (const auto& e : c.entries()) out.push_back(e.key);
    return out;
  }

  TempDir tmp_;
  fs::path store_dir_, cache_dir_;
  std::unique_ptr<CountingStore> store_;
  std::atomic<std::int64_t> now_{kT0};
};

// Cases about one layout's files.
class FileLayoutTest : public CacheTest {};
class PackTest : public CacheTest {};

TEST_P(CacheTest, OpenRefusesMissingFolderAndZeroBound) {
  CacheOptions o = options(100);
  o.dir.clear();
  auto r = Cache::open(o);
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("storage.cache_dir"));
  auto z = Cache::open(options(0));
  ASSERT_FALSE(z);
  EXPECT_THAT(z.error().message, HasSubstr("storage.cache_max_size"));
}

TEST_P(CacheTest, DownloadsOnceThenHits) {
  put("datasets/a.bin", "hello, cache");
  auto cache = open(1000);
  ASSERT_TRUE(cache);
  Fetched first = fetch_ok(*cache, "datasets/a.bin");
  EXPECT_EQ(first.kind, FetchKind::kDownloaded);
  EXPECT_EQ(contents(first), "hello, cache");
  EXPECT_EQ(first.entry.key, "datasets/a.bin");
  EXPECT_EQ(first.entry.store, store_->cache_id());
  EXPECT_EQ(first.entry.size, 12u);
  EXPECT_EQ(first.entry.etag, store_->head("datasets/a.bin")->etag);
  EXPECT_EQ(first.entry.fetched_at, kT0);
  EXPECT_EQ(first.entry.validated_at, kT0);
  EXPECT_FALSE(first.entry.pinned);
  EXPECT_EQ(read_path(first.entry.path), "hello, cache");
  EXPECT_EQ(fs::path(first.entry.path).extension(), packed() ? ".pack" : ".data");
  EXPECT_EQ(store_->gets, 1);
  int calls = store_->calls();

  Fetched second = fetch_ok(*cache, "datasets/a.bin");
  EXPECT_EQ(second.kind, FetchKind::kHit);
  EXPECT_EQ(contents(second), "hello, cache");
  EXPECT_EQ(store_->calls(), calls);  // a hit asks the store nothing

  CacheStats s = cache->stats();
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.entries, 1u);
  EXPECT_EQ(s.bytes, 12u);
  EXPECT_EQ(s.max_bytes, 1000u);
  EXPECT_EQ(tmp_files(), 0u);
}

TEST_P(CacheTest, ADownloadAlsoFillsTheCallersFileAHitLeavesItAlone) {
  put("datasets/a.bin", "hello, cache");
  auto cache = open(1000);
  ASSERT_TRUE(cache);
  auto file = [&](const std::string& name) {
    return ::open((tmp_.path() / name).c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  };
  FetchOptions fo;
  fo.tee_fd = file("mine");
  ASSERT_GE(fo.tee_fd, 0);
  Fetched first = fetch_ok(*cache, "datasets/a.bin", fo);
  ::close(fo.tee_fd);
  EXPECT_EQ(first.kind, FetchKind::kDownloaded);
  EXPECT_TRUE(first.teed);
  EXPECT_EQ(read_path((tmp_.path() / "mine").string()), "hello, cache");
  EXPECT_EQ(contents(first), "hello, cache");
  fo.tee_fd = file("again");
  Fetched second = fetch_ok(*cache, "datasets/a.bin", fo);
  ::close(fo.tee_fd);
  EXPECT_EQ(second.kind, FetchKind::kHit);
  EXPECT_FALSE(second.teed);  // the caller copies from the handle
  EXPECT_EQ(read_path((tmp_.path() / "again").string()), "");
}

TEST_P(CacheTest, MissingObjectIsNotFoundAndNothingIsCached) {
  auto cache = open(1000);
  ASSERT_TRUE(cache);
  auto r = cache->fetch(*store_, "nope.bin");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kNotFound);
  EXPECT_TRUE(cache->entries().empty());
  EXPECT_EQ(store_->gets, 0);
  EXPECT_EQ(tmp_files(), 0u);
}

TEST_P(CacheTest, KnownInfoFromAListingSkipsTheHead) {
  put("a.bin", "0123456789");
  auto listed = store_->list("");
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 1u);
  auto cache = open(1000);
  ASSERT_TRUE(cache);
  FetchOptions fo;
  fo.known = &listed->at(0);
  int heads = store_->heads;
  Fetched f = fetch_ok(*cache, "a.bin", fo);
  EXPECT_EQ(contents(f), "0123456789");
  EXPECT_EQ(store_->heads, heads);
  EXPECT_EQ(store_->gets, 1);
}

TEST_P(CacheTest, KnownInfoWithAnotherEtagIsNeverServedStale) {
  // `hylab data get` heads the object and passes what it saw: a changed ETag there means the
  // cached copy is stale, even within revalidate_after.
  put("k.bin", "first");
  auto cache = open(1000);
  ASSERT_TRUE(cache);
  fetch_ok(*cache, "k.bin");
  put("k.bin", "second, longer");
  auto head = store_->head("k.bin");
  ASSERT_TRUE(head);
  FetchOptions fo;
  fo.known = &*head;
  Fetched f = fetch_ok(*cache, "k.bin", fo);
  EXPECT_EQ(f.kind, FetchKind::kDownloaded);
  EXPECT_EQ(contents(f), "second, longer");
  EXPECT_EQ(f.entry.etag, head->etag);
  EXPECT_EQ(store_->gets, 2);
  EXPECT_EQ(data_bytes(), 14u);
  // The same ETag again: a plain hit.
  EXPECT_EQ(fetch_ok(*cache, "k.bin", fo).kind, FetchKind::kHit);
  EXPECT_EQ(store_->gets, 2);
}

TEST_P(CacheTest, SingleFlightEightReadersOneDownload) {
  const std::string data(256 * 1024, 'x');
  put("big.bin", data);
  auto cache = open(10 << 20);
  ASSERT_TRUE(cache);

  constexpr int kThreads = 8;
  std::mutex mu;
  std::condition_variable cv;
  int started = 0;
  // The one download waits until every reader has started, so that they come while it runs.
  store_->before_get = [&](const std::string&) {
    std::unique_lock lk(mu);
    cv.wait_until(lk, std::chrono::steady_clock::now() + std::chrono::seconds(5),
                  [&] { return started == kThreads; });
  };
  std::vector<Result<Fetched>> results(kThreads, Error{Errc::kInternal, "not run"});
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      {
        std::lock_guard lk(mu);
        ++started;
      }
      cv.notify_all();
      results[static_cast<std::size_t>(i)] = cache->fetch(*store_, "big.bin");
    });
  }
  for (auto& t : threads) t.join();

  EXPECT_EQ(store_->gets, 1);
  EXPECT_EQ(store_->heads, 1);
  int downloaded = 0;
  for (const auto& r : results) {
    ASSERT_TRUE(r) << r.error().message;
    ASSERT_TRUE(r->file);
    EXPECT_EQ(read_fd(r->file->fd()), data);
    EXPECT_EQ(r->entry.path, results[0]->entry.path);
    downloaded += r->kind == FetchKind::kDownloaded;
  }
  EXPECT_EQ(downloaded, 1);
  CacheStats s = cache->stats();
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.hits, static_cast<std::uint64_t>(kThreads - 1));
  EXPECT_EQ(s.entries, 1u);
  EXPECT_EQ(data_bytes(), data.size());
  EXPECT_EQ(tmp_files(), 0u);
}

TEST_P(CacheTest, NeverOverTheByteBound) {
  constexpr std::uint64_t kMax = 100;
  CacheOptions o = options(kMax);
  o.revalidate_after_seconds = 0;
  auto cache = open(o);
  ASSERT_TRUE(cache);
  for (int i = 0; i < 40; ++i) {
    std::string key = "obj/" + std::to_string(i % 13);
    // 1 to 60 bytes; a key comes back with another size (the fs ETag is size and mtime).
    std::size_t size = 1 + static_cast<std::size_t>(i * 7 % 60);
    put(key, std::string(size, static_cast<char>('a' + i % 26)));
    now_ += 1;
    auto r = cache->fetch(*store_, key);
    ASSERT_TRUE(r) << key << ": " << r.error().message;
    EXPECT_EQ(contents(*r), std::string(size, static_cast<char>('a' + i % 26))) << key;
    EXPECT_LE(data_bytes(), kMax) << "after fetching " << key;
    EXPECT_EQ(cache->stats().bytes, data_bytes());
    EXPECT_EQ(logged_keys().size(), cache->stats().entries);
    EXPECT_EQ(stored_entries(), cache->stats().entries);
  }
  EXPECT_GT(cache->stats().evictions, 0u);
  EXPECT_EQ(tmp_files(), 0u);
}

TEST_P(CacheTest, LeastRecentlyUsedIsEvictedFirst) {
  for (const char* k : {"a", "b", "c", "d"}) put(k, std::string(10, k[0]));
  auto cache = open(30);
  ASSERT_TRUE(cache);
  fetch_ok(*cache, "a");
  fetch_ok(*cache, "b");
  fetch_ok(*cache, "c");
  EXPECT_EQ(lru_keys(*cache), (std::vector<std::string>{"c", "b", "a"}));
  EXPECT_EQ(fetch_ok(*cache, "a").kind, FetchKind::kHit);  // a is now the most recent
  EXPECT_EQ(lru_keys(*cache), (std::vector<std::string>{"a", "c", "b"}));
  std::uint64_t evictions = cache->stats().evictions;

  EXPECT_EQ(fetch_ok(*cache, "d").kind, FetchKind::kDownloaded);
  EXPECT_EQ(keys_of(*cache), (std::set<std::string>{"a", "c", "d"}));
  EXPECT_EQ(cache->stats().evictions, evictions + 1);
  EXPECT_EQ(data_bytes(), 30u);
  int gets = store_->gets;
  EXPECT_EQ(fetch_ok(*cache, "a").kind, FetchKind::kHit);
  EXPECT_EQ(store_->gets, gets);
  EXPECT_EQ(fetch_ok(*cache, "b").kind, FetchKind::kDownloaded);  // evicted: fetched again
  EXPECT_EQ(store_->gets, gets + 1);
  EXPECT_EQ(keys_of(*cache), (std::set<std::string>{"a", "b", "d"}));  // c was the oldest
}

TEST_P(CacheTest, AnEvictedEntryStaysReadableThroughItsHandle) {
  put("a", std::string(20, 'a'));
  put("b", std::string(20, 'b'));
  auto cache = open(30);
  ASSERT_TRUE(cache);
  Fetched a = fetch_ok(*cache, "a");
  fetch_ok(*cache, "b");  // evicts a
  EXPECT_FALSE(fs::exists(a.entry.path));
  EXPECT_EQ(contents(a), std::string(20, 'a'));
}

TEST_P(CacheTest, ObjectLargerThanTheCacheIsAClearErrorAndLeavesNothing) {
  put("small", std::string(10, 's'));
  put("huge", std::string(31, 'h'));
  auto cache = open(30);
  ASSERT_TRUE(cache);
  fetch_ok(*cache, "small");
  auto r = cache->fetch(*store_, "huge");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("huge"));
  EXPECT_THAT(r.error().message, HasSubstr("31 bytes"));
  EXPECT_THAT(r.error().message, HasSubstr("larger than the whole cache"));
  EXPECT_THAT(r.error().message, HasSubstr("storage.cache_max_size"));
  EXPECT_EQ(store_->gets, 1);  // refused before downloading anything
  EXPECT_EQ(tmp_files(), 0u);
  EXPECT_EQ(keys_of(*cache), (std::set<std::string>{"small"}));  // nothing evicted for it
  EXPECT_EQ(data_bytes(), 10u);
  // Exactly the bound fits (after evicting the rest).
  put("exact", std::string(30, 'e'));
  EXPECT_EQ(contents(fetch_ok(*cache, "exact")), std::string(30, 'e'));
  EXPECT_EQ(data_bytes(), 30u);
}

TEST_P(CacheTest, PinnedEntriesAreNeverEvicted) {
  for (const char* k : {"keep/a", "keep/b", "c", "d", "e"}) put(k, std::string(10, k[0]));
  auto cache = open(30);
  ASSERT_TRUE(cache);
  FetchOptions pin;
  pin.pin = true;
  EXPECT_TRUE(fetch_ok(*cache, "keep/a", pin).entry.pinned);
  fetch_ok(*cache, "keep/b");
  auto pinned = cache->pin(store_->cache_id(), "keep/", true);
  ASSERT_TRUE(pinned);
  EXPECT_EQ(*pinned, 1u);  // keep/a already was
  EXPECT_EQ(cache->stats().pinned_bytes, 20u);

  // c, d and e take turns in the one unpinned slot; the pinned two stay.
  for (const char* k : {"c", "d", "e", "c"}) {
    fetch_ok(*cache, k);
    EXPECT_EQ(keys_of(*cache), (std::set<std::string>{"keep/a", "keep/b", k}));
    EXPECT_LE(data_bytes(), 30u);
  }
  int gets = store_->gets;
  EXPECT_EQ(fetch_ok(*cache, "keep/a").kind, FetchKind::kHit);
  EXPECT_EQ(fetch_ok(*cache, "keep/b").kind, FetchKind::kHit);
  EXPECT_EQ(store_->gets, gets);
}

TEST_P(CacheTest, WhenEverythingIsPinnedTheErrorSaysSo) {
  for (const char* k : {"a", "b", "c", "d"}) put(k, std::string(10, k[0]));
  auto cache = open(30);
  ASSERT_TRUE(cache);
  FetchOptions pin;
  pin.pin = true;
  for (const char* k : {"a", "b", "c"}) fetch_ok(*cache, k, pin);
  int gets = store_->gets;
  auto r = cache->fetch(*store_, "d");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("cannot make room"));
  EXPECT_THAT(r.error().message, HasSubstr("30 bytes are pinned"));
  EXPECT_EQ(store_->gets, gets);
  EXPECT_EQ(tmp_files(), 0u);
  EXPECT_EQ(keys_of(*cache), (std::set<std::string>{"a", "b", "c"}));
  EXPECT_EQ(cache->stats().evictions, 0u);

  // Unpinning one makes room again.
  auto n = cache->pin("", "b", false);
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 1u);
  EXPECT_EQ(contents(fetch_ok(*cache, "d")), std::string(10, 'd'));
  EXPECT_EQ(keys_of(*cache), (std::set<std::string>{"a", "c", "d"}));
}

TEST_P(CacheTest, EvictByPrefixAndForce) {
  for (const char* k : {"x/1", "x/2", "xy", "y/1"}) put(k, std::string(10, 'v'));
  auto cache = open(1000);
  ASSERT_TRUE(cache);
  for (const char* k : {"x/1", "x/2", "xy", "y/1"}) fetch_ok(*cache, k);
  ASSERT_TRUE(cache->pin(store_->cache_id(), "x/2", true));
  const std::string sid = store_->cache_id();

  auto other = cache->evict("file:///somewhere/else", "", true);  // another store: nothing
  ASSERT_TRUE(other);
  EXPECT_EQ(*other, 0u);

  auto freed = cache->evict(sid, "x/", false);
  ASSERT_TRUE(freed);
  EXPECT_EQ(*freed, 10u);  // x/1; x/2 is pinned, "xy" does not start with "x/"
  EXPECT_EQ(keys_of(*cache), (std::set<std::string>{"x/2", "xy", "y/1"}));
  EXPECT_EQ(data_bytes(), 30u);
  EXPECT_EQ(logged_keys().size(), 3u);

  auto rest = cache->evict("", "", false);  // every store, unpinned only
  ASSERT_TRUE(rest);
  EXPECT_EQ(*rest, 20u);
  EXPECT_EQ(keys_of(*cache), (std::set<std::string>{"x/2"}));

  auto forced = cache->evict(sid, "", true);
  ASSERT_TRUE(forced);
  EXPECT_EQ(*forced, 10u);
  EXPECT_TRUE(cache->entries().empty());
  EXPECT_EQ(data_bytes(), 0u);
  EXPECT_TRUE(logged_keys().empty());
  CacheStats s = cache->stats();
  EXPECT_EQ(s.bytes, 0u);
  EXPECT_EQ(s.pinned_bytes, 0u);
  EXPECT_EQ(s.evictions, 4u);
  // Gone means fetched again.
  int gets = store_->gets;
  EXPECT_EQ(fetch_ok(*cache, "x/2").kind, FetchKind::kDownloaded);
  EXPECT_EQ(store_->gets, gets + 1);
}

TEST_P(CacheTest, OldEntriesAreFetchedAgainAfterTheMaximumAge) {
  put("a", "old enough");
  put("p", "pinned");
  CacheOptions o = options(1000);
  o.max_age_seconds = 100;
  auto cache = open(o);
  ASSERT_TRUE(cache);
  fetch_ok(*cache, "a");
  FetchOptions pin;
  pin.pin = true;
  fetch_ok(*cache, "p", pin);
  now_ = kT0 + 100;
  EXPECT_EQ(fetch_ok(*cache, "a").kind, FetchKind::kHit);
  EXPECT_EQ(store_->gets, 2);
  now_ = kT0 + 101;
  Fetched again = fetch_ok(*cache, "a");
  EXPECT_EQ(again.kind, FetchKind::kDownloaded);
  EXPECT_EQ(contents(again), "old enough");
  EXPECT_EQ(again.entry.fetched_at, kT0 + 101);
  EXPECT_EQ(store_->gets, 3);
  // Pinned entries are kept past the maximum age.
  EXPECT_EQ(fetch_ok(*cache, "p").kind, FetchKind::kHit);
  EXPECT_EQ(store_->gets, 3);
  // The age counts from the download, not from the last read.
  now_ = kT0 + 150;
  EXPECT_EQ(fetch_ok(*cache, "a").kind, FetchKind::kHit);
  now_ = kT0 + 202;
  EXPECT_EQ(fetch_ok(*cache, "a").kind, FetchKind::kDownloaded);
}

TEST_P(CacheTest, RevalidationAfterTheIntervalThenDownloadWhenChanged) {
  put("r.bin", "version one");
  CacheOptions o = options(1000);
  o.revalidate_after_seconds = 60;
  auto cache = open(o);
  ASSERT_TRUE(cache);
  Fetched v1 = fetch_ok(*cache, "r.bin");
  EXPECT_EQ(v1.kind, FetchKind::kDownloaded);
  const std::string etag1 = v1.entry.etag;

  now_ = kT0 + 59;  // within revalidate_after: a plain hit, no store call at all
  int calls = store_->calls();
  EXPECT_EQ(fetch_ok(*cache, "r.bin").kind, FetchKind::kHit);
  EXPECT_EQ(store_->calls(), calls);

  now_ = kT0 + 60;  // due: one conditional HEAD, not modified
  Fetched reval = fetch_ok(*cache, "r.bin");
  EXPECT_EQ(reval.kind, FetchKind::kRevalidated);
  EXPECT_EQ(contents(reval), "version one");
  EXPECT_EQ(reval.entry.validated_at, kT0 + 60);
  EXPECT_EQ(reval.entry.fetched_at, kT0);
  EXPECT_EQ(store_->revalidates, 1);
  EXPECT_EQ(store_->gets, 1);
  EXPECT_EQ(cache->stats().revalidated, 1u);

  now_ = kT0 + 119;  // validated at +60: a hit again
  calls = store_->calls();
  EXPECT_EQ(fetch_ok(*cache, "r.bin").kind, FetchKind::kHit);
  EXPECT_EQ(store_->calls(), calls);

  // The object changes (another size, so the fs ETag changes whatever the mtime resolution).
  put("r.bin", "version two, longer");
  now_ = kT0 + 120;
  Fetched v2 = fetch_ok(*cache, "r.bin");
  EXPECT_EQ(v2.kind, FetchKind::kDownloaded);
  EXPECT_EQ(contents(v2), "version two, longer");
  EXPECT_NE(v2.entry.etag, etag1);
  EXPECT_EQ(v2.entry.fetched_at, kT0 + 120);
  EXPECT_EQ(store_->gets, 2);
  EXPECT_EQ(store_->revalidates, 2);
  EXPECT_EQ(cache->stats().bytes, 19u);
  EXPECT_EQ(data_bytes(), 19u);
  // A reader of the old version keeps its bytes.
  EXPECT_EQ(contents(v1), "version one");
  EXPECT_EQ(tmp_files(), 0u);
}

TEST_P(CacheTest, ZeroRevalidateAfterChecksAtEveryRead) {
  put("r.bin", "same");
  CacheOptions o = options(1000);
  o.revalidate_after_seconds = 0;
  auto cache = open(o);
  ASSERT_TRUE(cache);
  fetch_ok(*cache, "r.bin");
  EXPECT_EQ(fetch_ok(*cache, "r.bin").kind, FetchKind::kRevalidated);
  EXPECT_EQ(fetch_ok(*cache, "r.bin").kind, FetchKind::kRevalidated);
  EXPECT_EQ(store_->revalidates, 2);
  EXPECT_EQ(store_->gets, 1);
}

TEST_P(CacheTest, AnObjectGoneUpstreamIsGoneFromTheCache) {
  put("gone.bin", "soon gone");
  CacheOptions o = options(1000);
  o.revalidate_after_seconds = 60;
  auto cache = open(o);
  ASSERT_TRUE(cache);
  Fetched f = fetch_ok(*cache, "gone.bin");
  fs::remove(store_dir_ / "gone.bin");
  now_ = kT0 + 61;
  auto r = cache->fetch(*store_, "gone.bin");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kNotFound);
  EXPECT_TRUE(cache->entries().empty());
  EXPECT_FALSE(fs::exists(f.entry.path));
  EXPECT_TRUE(logged_keys().empty());
  EXPECT_EQ(cache->stats().bytes, 0u);
}

TEST_P(CacheTest, AChangedObjectOverHalfTheCacheIsStillRefreshed) {
  // The stale copy must not block the room its own new version needs.
  put("big", std::string(60, '1'));
  CacheOptions o = options(100);
  o.revalidate_after_seconds = 60;
  auto cache = open(o);
  ASSERT_TRUE(cache);
  fetch_ok(*cache, "big");
  put("big", std::string(70, '2'));
  now_ = kT0 + 60;
  auto r = cache->fetch(*store_, "big");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->kind, FetchKind::kDownloaded);
  EXPECT_EQ(contents(*r), std::string(70, '2'));
  EXPECT_EQ(data_bytes(), 70u);
  EXPECT_EQ(cache->stats().bytes, 70u);
}

TEST_P(CacheTest, AChangedPinnedObjectStaysPinned) {
  put("p", std::string(60, '1'));
  CacheOptions o = options(100);
  o.revalidate_after_seconds = 60;
  auto cache = open(o);
  ASSERT_TRUE(cache);
  FetchOptions pin;
  pin.pin = true;
  fetch_ok(*cache, "p", pin);
  put("p", std::string(50, '2'));
  now_ = kT0 + 60;
  Fetched f = fetch_ok(*cache, "p");
  EXPECT_EQ(f.kind, FetchKind::kDownloaded);
  EXPECT_EQ(contents(f), std::string(50, '2'));
  EXPECT_TRUE(f.entry.pinned);
  EXPECT_EQ(cache->stats().pinned_bytes, 50u);
}

TEST_P(CacheTest, IntegrityFailureCachesNothing) {
  const std::string data(40, 'i');
  put("i.bin", data);
  auto cache = open(40);
  ASSERT_TRUE(cache);
  store_->head_sha256 = std::string(64, '0');  // what the uploader "stored"
  auto r = cache->fetch(*store_, "i.bin");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("integrity"));
  EXPECT_THAT(r.error().message, HasSubstr("i.bin"));
  EXPECT_THAT(r.error().message, HasSubstr(hex_digest(data, true)));
  EXPECT_EQ(store_->gets, 1);
  EXPECT_TRUE(cache->entries().empty());
  EXPECT_EQ(cache->stats().bytes, 0u);
  EXPECT_EQ(data_bytes(), 0u);
  EXPECT_TRUE(logged_keys().empty());
  EXPECT_EQ(tmp_files(), 0u);

  // The failed download gave its reservation back: an object of the whole bound still fits,
  // and the right sha256 passes and is kept with the entry.
  store_->head_sha256 = hex_digest(data, true);
  Fetched f = fetch_ok(*cache, "i.bin");
  EXPECT_EQ(contents(f), data);
  EXPECT_EQ(f.entry.sha256, hex_digest(data, true));
}

TEST_P(CacheTest, Md5EtagIsChecked) {
  const std::string data = "single-part upload";
  put("m.bin", data);
  auto cache = open(1000);
  ASSERT_TRUE(cache);
  store_->get_etag = hex_digest("something else", false);
  auto r = cache->fetch(*store_, "m.bin");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("integrity"));
  EXPECT_THAT(r.error().message, HasSubstr("MD5"));
  EXPECT_TRUE(cache->entries().empty());
  EXPECT_EQ(tmp_files(), 0u);

  store_->get_etag = hex_digest(data, false);
  Fetched f = fetch_ok(*cache, "m.bin");
  EXPECT_EQ(contents(f), data);
  EXPECT_EQ(f.entry.etag, hex_digest(data, false));
}

// Entries are not fsynced one by one; state.json records since when writes may be unsynced
// and in which boot. A power loss cannot be caused here: the test writes the state a run in
// another boot would have left, and bytes that never reached the disk (zeros, same size).
TEST_P(FileLayoutTest, AfterAPossiblePowerLossOnlyEntriesThatCheckOutSurvive) {
  const std::map<std::string, std::string> objects{
      {"kept", "0123456789"}, {"torn", "abcdefghij"}, {"unhashed", "xxxxxxxxxx"}};
  for (const auto& [k, v] : objects) put(k, v);
  std::map<std::string, std::string> data_path;
  {
    auto cache = open(1000);
    ASSERT_TRUE(cache);
    for (const auto& [k, v] : objects) {
      store_->head_sha256 = k == "unhashed" ? "" : hex_digest(v, true);
      data_path[k] = fetch_ok(*cache, k).entry.path;
    }
    store_->head_sha256.clear();
  }
  // The same boot (a killed process): nothing to check, everything stays.
  {
    auto cache = open(1000);
    ASSERT_TRUE(cache);
    EXPECT_EQ(cache->stats().entries, 3u);
  }
  std::ofstream(data_path["torn"], std::ios::binary | std::ios::trunc) << std::string(10, '\0');
  std::ofstream(cache_dir_ / "state.json", std::ios::trunc)
      << R"({"boot_id":"a-boot-before-a-power-loss","dirty_since":)" << kT0 - 10 << "}";
  auto cache = open(1000);
  ASSERT_TRUE(cache);
  // "torn" fails its sha256, "unhashed" has nothing to be checked with: both are dropped.
  EXPECT_EQ(keys_of(*cache), (std::set<std::string>{"kept"}));
  EXPECT_EQ(cache->stats().repaired, 2u);
  EXPECT_FALSE(fs::exists(data_path["torn"]));
  EXPECT_EQ(contents(fetch_ok(*cache, "kept")), "0123456789");
}

TEST_P(FileLayoutTest, CrashLeftoversAreRepairedAtOpen) {
  const std::vector<std::string> keys{"good", "no-line", "no-data", "wrong-size", "ended"};
  for (const auto& k : keys) put(k, std::string(10, k[0]));
  std::map<std::string, std::string> data_path;
  {
    auto cache = open(1000);
    ASSERT_TRUE(cache);
    for (const auto& k : keys) data_path[k] = fetch_ok(*cache, k).entry.path;
    EXPECT_EQ(logged_keys(), std::set<std::string>(keys.begin(), keys.end()));
  }
  // A crash between renaming the data and appending its line.
  drop_log_lines("no-line");
  // Data lost under its line.
  fs::remove(data_path["no-data"]);
  // Data whose size is not what its line says.
  std::ofstream(data_path["wrong-size"], std::ios::app) << "+";
  // A crash between an entry's "gone" line and the removal of its data.
  std::string ended_id = fs::path(data_path["ended"]).stem().string();
  std::ofstream(cache_dir_ / "index.log", std::ios::app) << R"({"gone":")" << ended_id << "\"}\n";
  // Data of an entry that never got a line, in its own folder.
  fs::create_directories(cache_dir_ / "objects" / "zz");
  std::ofstream(cache_dir_ / "objects" / "zz" / (std::string(40, 'z') + ".data")) << "orphan";
  // An older version's interrupted metadata write.
  fs::path meta_tmp = fs::path(data_path["good"]).parent_path() / ".x.meta.hylab-tmp-1-1";
  std::ofstream(meta_tmp) << "{";
  // Downloads that were in progress: beside their final name, and in tmp/ where older
  // versions put them.
  fs::path part = fs::path(data_path["good"]).parent_path() / (std::string(40, 'p') + ".part3");
  std::ofstream(part) << "partial";
  fs::create_directories(cache_dir_ / "tmp");
  std::ofstream(cache_dir_ / "tmp" / "0123.0") << "partial";
  std::ofstream(cache_dir_ / "tmp" / "4567.1") << "partial too";
  // A last line torn by a power loss.
  std::ofstream(cache_dir_ / "index.log", std::ios::app) << R"({"store":"x","key":"torn)";

  std::uint64_t repaired_before = 0;
  {
    auto cache = open(1000);
    ASSERT_TRUE(cache);
    CacheStats s = cache->stats();
    repaired_before = s.repaired;
    // no-line, no-data, wrong-size, ended, the orphan, the metadata write, three downloads.
    EXPECT_EQ(s.repaired, 9u);
    EXPECT_EQ(s.entries, 1u);
    EXPECT_EQ(s.bytes, 10u);
    EXPECT_EQ(keys_of(*cache), (std::set<std::string>{"good"}));
    for (const char* k : {"no-line", "wrong-size", "ended"}) EXPECT_FALSE(fs::exists(data_path[k]));
    EXPECT_FALSE(fs::exists(cache_dir_ / "objects" / "zz" / (std::string(40, 'z') + ".data")));
    EXPECT_FALSE(fs::exists(meta_tmp));
    EXPECT_EQ(tmp_files(), 0u);
    EXPECT_FALSE(fs::exists(part));
    EXPECT_FALSE(fs::exists(cache_dir_ / "tmp"));
    EXPECT_EQ(data_bytes(), 10u);
    // The log was rewritten with the one live entry (the torn line gone with the rest).
    EXPECT_EQ(log_lines().size(), 1u);
    EXPECT_EQ(logged_keys(), (std::set<std::string>{"good"}));

    int gets = store_->gets;
    Fetched good = fetch_ok(*cache, "good");
    EXPECT_EQ(good.kind, FetchKind::kHit);
    EXPECT_EQ(contents(good), std::string(10, 'g'));
    EXPECT_EQ(fetch_ok(*cache, "wrong-size").kind, FetchKind::kDownloaded);
    EXPECT_EQ(store_->gets, gets + 1);
  }
  // A clean folder needs no repair; the counter is kept across runs.
  auto cache = open(1000);
  ASSERT_TRUE(cache);
  EXPECT_EQ(cache->stats().repaired, repaired_before);
  EXPECT_EQ(keys_of(*cache), (std::set<std::string>{"good", "wrong-size"}));
}

TEST_P(CacheTest, CorruptLogLinesAreRepaired) {
  put("a", "aaaa");
  put("b", "bbbb");
  put("c", "cccc");
  {
    auto cache = open(1000);
    ASSERT_TRUE(cache);
    for (const char* k : {"a", "b", "c"}) fetch_ok(*cache, k);
  }
  // a's line does not parse; b's has no key; c's is intact.
  std::string text;
  for (auto line : log_lines()) {
    if (line.find(R"("key":"a")") != std::string::npos) line = "{not json";
    if (line.find(R"("key":"b")") != std::string::npos) line = R"({"store":"s","size":4})";
    text += line + "\n";
  }
  std::ofstream(cache_dir_ / "index.log", std::ios::trunc) << text;

  auto cache = open(1000);
  ASSERT_TRUE(cache);
  // a's and b's data, without an entry (packed: bytes between entries, freed at open when
  // they take more than a few blocks: see PackTest.CrashLeftoversAreRepairedAtOpen).
  EXPECT_EQ(cache->stats().repaired, packed() ? 0u : 2u);
  EXPECT_EQ(keys_of(*cache), (std::set<std::string>{"c"}));
  EXPECT_EQ(data_bytes(), 4u);
  EXPECT_EQ(log_lines().size(), 1u);
}

TEST_P(FileLayoutTest, AnOlderVersionsMetadataFilesAreFoldedIntoTheLog) {
  put("a", "aaaa");
  put("b", "bbbb");
  std::map<std::string, std::string> data_path;
  {
    auto cache = open(1000);
    ASSERT_TRUE(cache);
    data_path["a"] = fetch_ok(*cache, "a").entry.path;
    FetchOptions pin;
    pin.pin = true;
    data_path["b"] = fetch_ok(*cache, "b", pin).entry.path;
  }
  // The layout before index.log: objects/XY/ID.meta beside each data file.
  auto entries = log_lines();
  ASSERT_EQ(entries.size(), 2u);
  for (const auto& line : entries) {
    std::string key = line.find(R"("key":"a")") != std::string::npos ? "a" : "b";
    std::string meta = data_path[key].substr(0, data_path[key].size() - 5) + ".meta";
    std::ofstream(meta) << line;
  }
  fs::remove(cache_dir_ / "index.log");
  // A .meta whose file name is not its key's id: its data is not trusted.
  fs::create_directories(cache_dir_ / "objects" / "yy");
  std::ofstream(cache_dir_ / "objects" / "yy" / (std::string(40, 'y') + ".meta")) << entries[0];
  std::ofstream(cache_dir_ / "objects" / "yy" / (std::string(40, 'y') + ".data")) << "aaaa";

  auto cache = open(1000);
  ASSERT_TRUE(cache);
  EXPECT_EQ(keys_of(*cache), (std::set<std::string>{"a", "b"}));
  EXPECT_EQ(cache->stats().pinned_bytes, 4u);
  EXPECT_EQ(cache->stats().repaired, 1u);
  EXPECT_EQ(files_with_extension(".meta"), 0u);
  EXPECT_EQ(logged_keys(), (std::set<std::string>{"a", "b"}));
  EXPECT_EQ(fetch_ok(*cache, "a").kind, FetchKind::kHit);
}

TEST_P(CacheTest, TheLogIsRewrittenWhenItOutgrowsTheEntries) {
  // A long-running process: every fetch of a changed object ends an entry and adds one.
  put("k", "v0");
  auto cache = open(1000);
  ASSERT_TRUE(cache);
  fetch_ok(*cache, "k");
  for (int i = 1; i <= 1200; ++i) {
    put("k", "v" + std::to_string(i));
    auto known = store_->head("k");
    ASSERT_TRUE(known);
    FetchOptions fo;
    fo.known = &*known;
    ASSERT_EQ(fetch_ok(*cache, "k", fo).kind, FetchKind::kDownloaded) << i;
  }
  EXPECT_LT(log_lines().size(), 1100u);
  EXPECT_EQ(logged_keys(), (std::set<std::string>{"k"}));
}

TEST_P(CacheTest, ASecondOpenWaitsAndThenSaysInUse) {
  {
    auto first = open(1000);
    ASSERT_TRUE(first);
    first->count_refused(5);
  }
  auto held = open(1000);
  ASSERT_TRUE(held);
  const std::string stats_before = read_path(cache_dir_ / "stats.json");
  ASSERT_THAT(stats_before, HasSubstr("\"refused_uploads\":5"));

  auto t0 = std::chrono::steady_clock::now();
  auto second = Cache::open(options(1000));  // lock_wait_seconds = 0.2
  double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_FALSE(second);
  EXPECT_THAT(second.error().message, HasSubstr("in use"));
  EXPECT_THAT(second.error().message, HasSubstr(cache_dir_.string()));
  EXPECT_GE(waited, 0.2);
  EXPECT_LT(waited, 1.5);
  // The open that never got the folder must not write into it.
  EXPECT_EQ(read_path(cache_dir_ / "stats.json"), stats_before);

  held.reset();  // closing releases the lock
  auto third = open(1000);
  ASSERT_TRUE(third);
  EXPECT_EQ(third->stats().refused_uploads, 5u);
}

TEST_P(CacheTest, ReopeningKeepsEntriesAndTheLruOrder) {
  for (const char* k : {"a", "b", "c", "d", "e", "f"}) put(k, std::string(10, k[0]));
  {
    auto cache = open(40);
    ASSERT_TRUE(cache);
    // In quick succession: the order must survive even within one tick of the file clock.
    for (const char* k : {"a", "b", "c", "d", "a", "b"}) fetch_ok(*cache, k);
    EXPECT_EQ(lru_keys(*cache), (std::vector<std::string>{"b", "a", "d", "c"}));
  }
  auto cache = open(40);
  ASSERT_TRUE(cache);
  EXPECT_EQ(lru_keys(*cache), (std::vector<std::string>{"b", "a", "d", "c"}));
  EXPECT_EQ(cache->stats().entries, 4u);
  EXPECT_EQ(cache->stats().bytes, 40u);
  int gets = store_->gets;
  for (const char* k : {"a", "b", "c", "d"}) {
    Fetched f = fetch_ok(*cache, k);
    EXPECT_EQ(f.kind, FetchKind::kHit) << k;
    EXPECT_EQ(contents(f), std::string(10, k[0]));
  }
  EXPECT_EQ(store_->gets, gets);
  // Now a, b, c, d from oldest: e evicts a, f evicts b.
  fetch_ok(*cache, "e");
  EXPECT_EQ(keys_of(*cache), (std::set<std::string>{"b", "c", "d", "e"}));
  fetch_ok(*cache, "f");
  EXPECT_EQ(keys_of(*cache), (std::set<std::string>{"c", "d", "e", "f"}));
}

TEST_P(CacheTest, EvictionOrderAfterReopenFollowsLastUse) {
  for (const char* k : {"a", "b", "c", "d"}) put(k, std::string(10, k[0]));
  {
    auto cache = open(30);
    ASSERT_TRUE(cache);
    for (const char* k : {"c", "b", "a", "c"}) fetch_ok(*cache, k);
  }
  auto cache = open(30);
  ASSERT_TRUE(cache);
  fetch_ok(*cache, "d");  // b is the least recently used
  EXPECT_EQ(keys_of(*cache), (std::set<std::string>{"a", "c", "d"}));
}

TEST_P(CacheTest, PinsSurviveReopening) {
  put("p", std::string(10, 'p'));
  put("q", std::string(10, 'q'));
  {
    auto cache = open(1000);
    ASSERT_TRUE(cache);
    fetch_ok(*cache, "p");
    fetch_ok(*cache, "q");
    ASSERT_TRUE(cache->pin(store_->cache_id(), "p", true));
  }
  auto cache = open(1000);
  ASSERT_TRUE(cache);
  EXPECT_EQ(cache->stats().pinned_bytes, 10u);
  auto freed = cache->evict("", "", false);
  ASSERT_TRUE(freed);
  EXPECT_EQ(*freed, 10u);
  EXPECT_EQ(keys_of(*cache), (std::set<std::string>{"p"}));
}

TEST_P(CacheTest, ASmallerBoundAtOpenShrinksTheCache) {
  for (const char* k : {"a", "b", "c", "d"}) put(k, std::string(10, k[0]));
  {
    auto cache = open(40);
    ASSERT_TRUE(cache);
    for (const char* k : {"a", "b", "c", "d"}) fetch_ok(*cache, k);
  }
  auto cache = open(20);
  ASSERT_TRUE(cache);
  EXPECT_EQ(keys_of(*cache), (std::set<std::string>{"c", "d"}));
  EXPECT_EQ(data_bytes(), 20u);
  EXPECT_EQ(cache->stats().bytes, 20u);
}

TEST_P(CacheTest, CountersAreKeptAcrossRuns) {
  for (const char* k : {"a", "b", "c"}) put(k, std::string(10, k[0]));
  {
    auto cache = open(20);
    ASSERT_TRUE(cache);
    fetch_ok(*cache, "a");
    fetch_ok(*cache, "a");
    fetch_ok(*cache, "b");
    fetch_ok(*cache, "c");  // evicts a
    fetch_ok(*cache, "c");
    fetch_ok(*cache, "c");
    CacheStats s = cache->stats();
    EXPECT_EQ(s.misses, 3u);
    EXPECT_EQ(s.hits, 3u);
    EXPECT_EQ(s.evictions, 1u);
    EXPECT_EQ(s.refused_uploads, 0u);
    cache->count_refused(2);
    cache->count_refused(3);
    EXPECT_EQ(cache->stats().refused_uploads, 5u);
  }
  {
    auto cache = open(20);
    ASSERT_TRUE(cache);
    CacheStats s = cache->stats();
    EXPECT_EQ(s.misses, 3u);
    EXPECT_EQ(s.hits, 3u);
    EXPECT_EQ(s.evictions, 1u);
    EXPECT_EQ(s.refused_uploads, 5u);
    EXPECT_EQ(s.entries, 2u);
    cache->count_refused(1);
    fetch_ok(*cache, "b");
  }
  auto cache = open(20);
  ASSERT_TRUE(cache);
  EXPECT_EQ(cache->stats().refused_uploads, 6u);
  EXPECT_EQ(cache->stats().hits, 4u);
}

TEST_P(CacheTest, ConcurrentFetchesOfDifferentObjectsFitTheBound) {
  // More downloads at once than the cache holds: they wait for each other's room instead of
  // failing, and the bound holds at the end.
  constexpr int kThreads = 8;
  constexpr int kPerThread = 6;
  for (int t = 0; t < kThreads; ++t)
    for (int i = 0; i < kPerThread; ++i)
      put("t" + std::to_string(t) + "/" + std::to_string(i),
          std::string(10, static_cast<char>('a' + t)));
  auto cache = open(40);
  ASSERT_TRUE(cache);
  std::vector<std::string> errors(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        std::string key = "t" + std::to_string(t) + "/" + std::to_string(i);
        auto r = cache->fetch(*store_, key);
        if (!r) {
          errors[static_cast<std::size_t>(t)] = key + ": " + r.error().message;
          return;
        }
        if (contents(*r) != std::string(10, static_cast<char>('a' + t))) {
          errors[static_cast<std::size_t>(t)] = key + ": wrong bytes";
          return;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (const auto& e : errors) EXPECT_EQ(e, "");
  EXPECT_LE(data_bytes(), 40u);
  EXPECT_EQ(cache->stats().bytes, data_bytes());
  EXPECT_EQ(tmp_files(), 0u);
  // The log, written from all threads at once, says what the cache holds: reopened, the
  // same entries, nothing to repair.
  auto held = keys_of(*cache);
  EXPECT_EQ(logged_keys(), held);
  auto repaired = cache->stats().repaired;
  cache.reset();
  auto again = open(40);
  ASSERT_TRUE(again);
  EXPECT_EQ(keys_of(*again), held);
  EXPECT_EQ(again->stats().repaired, repaired);
}

TEST_P(CacheTest, ManyThreadsAndARewriteOfTheLogLoseNoEntry) {
  // 16 threads download 1,500 objects into a cache that evicts as they go: "gone" lines
  // and new lines interleave, and the log is rewritten along the way (it outgrows the
  // entries). After reopening, the entries are those the running cache held.
  constexpr int kThreads = 16;
  constexpr int kObjects = 1500;
  for (int i = 0; i < kObjects; ++i) put("o/" + std::to_string(i), std::string(4, 'x'));
  auto cache = open(4 * 300);
  ASSERT_TRUE(cache);
  std::atomic<int> next{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = next++; i < kObjects; i = next++) {
        if (!cache->fetch(*store_, "o/" + std::to_string(i))) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  auto held = keys_of(*cache);
  EXPECT_EQ(held.size(), 300u);
  EXPECT_LT(log_lines().size(), 2u * 300 + 1024 + 2 * kThreads + 1);  // rewritten meanwhile
  EXPECT_EQ(logged_keys(), held);
  cache.reset();
  auto again = open(4 * 300);
  ASSERT_TRUE(again);
  EXPECT_EQ(keys_of(*again), held);
  EXPECT_EQ(again->stats().repaired, 0u);
}

// Packs: where the bytes go, and when they are freed.
bool is_hole(const std::string& path, std::uint64_t offset) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  off_t data = ::lseek(fd, static_cast<off_t>(offset), SEEK_DATA);
  ::close(fd);
  return data < 0 || static_cast<std::uint64_t>(data) > offset;
}

TEST_P(PackTest, SmallObjectsShareAPackLargeOnesGetAFile) {
  const std::string a(5000, 'a'), b(70000, 'b'), big((1 << 20) + 1, 'B');
  put("a", a);
  put("b", b);
  put("big", big);
  auto cache = open(8 << 20);
  ASSERT_TRUE(cache);
  Fetched fa = fetch_ok(*cache, "a"), fb = fetch_ok(*cache, "b"), fbig = fetch_ok(*cache, "big");
  EXPECT_TRUE(fa.entry.packed);
  EXPECT_TRUE(fb.entry.packed);
  EXPECT_EQ(fa.entry.path, fb.entry.path);  // one pack, one after the other
  EXPECT_EQ(fa.entry.offset, 0u);
  EXPECT_EQ(fb.entry.offset, a.size());
  EXPECT_EQ(fs::file_size(fa.entry.path), a.size() + b.size());
  EXPECT_EQ(fs::path(fa.entry.path).parent_path(), cache_dir_ / "packs");
  EXPECT_FALSE(fbig.entry.packed);  // over pack_max_bytes: a file of its own
  EXPECT_EQ(fs::path(fbig.entry.path).extension(), ".data");
  EXPECT_EQ(files_with_extension(".data"), 1u);
  EXPECT_EQ(contents(fa), a);
  EXPECT_EQ(contents(fb), b);
  EXPECT_EQ(contents(fbig), big);
  EXPECT_EQ(contents(fetch_ok(*cache, "b")), b);  // a hit reads its range only
}

TEST_P(PackTest, EvictedBytesAreFreedOnceTheirLastReaderCloses) {
  const std::string a(64 << 10, 'a'), b(64 << 10, 'b'), c(64 << 10, 'c');
  put("a", a);
  put("b", b);
  put("c", c);
  auto cache = open(1 << 20);
  ASSERT_TRUE(cache);
  fetch_ok(*cache, "a");
  std::optional<Fetched> fb = fetch_ok(*cache, "b");
  Fetched fc = fetch_ok(*cache, "c");
  std::string pack = fb->entry.path;
  ASSERT_EQ(fc.entry.path, pack);
  std::uint64_t b_at = fb->entry.offset;
  EXPECT_FALSE(is_hole(pack, b_at));

  // b is evicted while a handle reads it: its bytes stay until the handle closes.
  EXPECT_EQ(*cache->evict(store_->cache_id(), "b", false), b.size());
  EXPECT_FALSE(is_hole(pack, b_at));
  EXPECT_EQ(contents(*fb), b);
  fb.reset();
  EXPECT_TRUE(is_hole(pack, b_at));
  EXPECT_EQ(fs::file_size(pack), 3 * (64u << 10));  // the others keep their offsets
  // Without a reader: freed at once.
  std::uint64_t a_at = fetch_ok(*cache, "a").entry.offset;  // (its handle closed here)
  EXPECT_EQ(*cache->evict(store_->cache_id(), "a", false), a.size());
  EXPECT_TRUE(is_hole(pack, a_at));
  EXPECT_EQ(contents(fc), c);
  EXPECT_EQ(contents(fetch_ok(*cache, "c")), c);
  // The last entry gone, the pack goes (a handle open on it keeps reading).
  EXPECT_EQ(*cache->evict(store_->cache_id(), "c", false), c.size());
  EXPECT_FALSE(fs::exists(pack));
  EXPECT_EQ(contents(fc), c);
  EXPECT_EQ(cache->stats().bytes, 0u);
}

TEST_P(PackTest, CrashLeftoversAreRepairedAtOpen) {
  const std::vector<std::string> keys{"good1", "no-line", "good2"};
  for (const auto& k : keys) put(k, std::string(64 << 10, k.back()));
  std::string pack;
  std::uint64_t no_line_at = 0, end = 0;
  {
    auto cache = open(1 << 20);
    ASSERT_TRUE(cache);
    for (const auto& k : keys) {
      Fetched f = fetch_ok(*cache, k);
      pack = f.entry.path;
      if (k == "no-line") no_line_at = f.entry.offset;
      end = f.entry.offset + f.entry.size;
    }
  }
  // A crash between an entry's bytes and its line; a download cut off by a crash at the
  // end of the pack; a pack whose entries never got a line; a stray file.
  drop_log_lines("no-line");
  std::ofstream(pack, std::ios::binary | std::ios::app) << std::string(100 << 10, 'x');
  std::ofstream(cache_dir_ / "packs" / "1-2-3.pack") << "orphan";
  std::ofstream(cache_dir_ / "packs" / "stray.tmp") << "stray";

  auto cache = open(1 << 20);
  ASSERT_TRUE(cache);
  // no-line's bytes (a hole now), the cut download, the orphan pack, the stray file.
  EXPECT_EQ(cache->stats().repaired, 4u);
  EXPECT_EQ(keys_of(*cache), (std::set<std::string>{"good1", "good2"}));
  EXPECT_TRUE(is_hole(pack, no_line_at));
  EXPECT_EQ(fs::file_size(pack), end);
  EXPECT_FALSE(fs::exists(cache_dir_ / "packs" / "1-2-3.pack"));
  EXPECT_FALSE(fs::exists(cache_dir_ / "packs" / "stray.tmp"));
  EXPECT_EQ(contents(fetch_ok(*cache, "good1")), std::string(64 << 10, '1'));
  EXPECT_EQ(contents(fetch_ok(*cache, "good2")), std::string(64 << 10, '2'));
  // The pack takes appends again, from its last entry's end.
  Fetched again = fetch_ok(*cache, "no-line");
  EXPECT_EQ(again.kind, FetchKind::kDownloaded);
  EXPECT_EQ(again.entry.path, pack);
  EXPECT_EQ(again.entry.offset, end);
  EXPECT_EQ(contents(again), std::string(64 << 10, 'e'));
}

TEST_P(PackTest, AfterAPossiblePowerLossOnlyEntriesThatCheckOutSurvive) {
  const std::map<std::string, std::string> objects{
      {"kept", "0123456789"}, {"torn", "abcdefghij"}, {"unhashed", "xxxxxxxxxx"}};
  for (const auto& [k, v] : objects) put(k, v);
  std::map<std::string, Fetched> fetched;
  {
    auto cache = open(1000);
    ASSERT_TRUE(cache);
    for (const auto& [k, v] : objects) {
      store_->head_sha256 = k == "unhashed" ? "" : hex_digest(v, true);
      fetched[k] = fetch_ok(*cache, k);
    }
    store_->head_sha256.clear();
  }
  {
    std::fstream torn(fetched["torn"].entry.path, std::ios::binary | std::ios::in | std::ios::out);
    torn.seekp(static_cast<std::streamoff>(fetched["torn"].entry.offset));
    torn << std::string(10, '\0');
  }
  fetched.clear();
  std::ofstream(cache_dir_ / "state.json", std::ios::trunc)
      << R"({"boot_id":"a-boot-before-a-power-loss","dirty_since":)" << kT0 - 10 << "}";
  auto cache = open(1000);
  ASSERT_TRUE(cache);
  EXPECT_EQ(keys_of(*cache), (std::set<std::string>{"kept"}));
  // torn and unhashed dropped; the pack is cut back to kept, its first entry.
  EXPECT_EQ(cache->stats().repaired, 3u);
  EXPECT_EQ(fs::file_size(cache_dir_ / "packs" / fs::path(cache->entries()[0].path).filename()),
            10u);
  EXPECT_EQ(contents(fetch_ok(*cache, "kept")), "0123456789");
}

TEST_P(PackTest, UsesOfPackedEntriesAreLoggedAndTheLogStaysBounded) {
  put("a", "aaaa");
  put("b", "bbbb");
  {
    auto cache = open(1000);
    ASSERT_TRUE(cache);
    fetch_ok(*cache, "a");
    fetch_ok(*cache, "b");
    // Each hit is a "use" line (a packed entry has no file whose mtime could say it).
    for (int i = 0; i < 1200; ++i) ASSERT_EQ(fetch_ok(*cache, "a").kind, FetchKind::kHit) << i;
    EXPECT_LT(log_lines().size(), 1100u);  // rewritten on the way
    EXPECT_EQ(lru_keys(*cache), (std::vector<std::string>{"a", "b"}));
  }
  auto cache = open(1000);
  ASSERT_TRUE(cache);
  EXPECT_EQ(lru_keys(*cache), (std::vector<std::string>{"a", "b"}));
  fetch_ok(*cache, "b");
  cache.reset();
  auto again = open(1000);
  ASSERT_TRUE(again);
  EXPECT_EQ(lru_keys(*again), (std::vector<std::string>{"b", "a"}));
}

TEST_P(PackTest, WithoutHolesEveryObjectGetsAFile) {
  put("a", "aaaa");
  CacheOptions o = options(1000);
  std::string probed;
  o.holes_work = [&](const std::string& dir) {
    probed = dir;
    return false;
  };
  auto cache = open(o);
  ASSERT_TRUE(cache);
  EXPECT_EQ(probed, (cache_dir_ / "packs").string());
  Fetched a = fetch_ok(*cache, "a");
  EXPECT_FALSE(a.entry.packed);
  EXPECT_EQ(fs::path(a.entry.path).extension(), ".data");
  EXPECT_EQ(contents(a), "aaaa");
  EXPECT_TRUE(fs::is_empty(cache_dir_ / "packs"));
  // The probe of the real file system (this one has holes) packs them.
  cache.reset();
  put("b", "bbbb");
  auto real = open(1000);
  ASSERT_TRUE(real);
  EXPECT_TRUE(fetch_ok(*real, "b").entry.packed);
  EXPECT_EQ(contents(fetch_ok(*real, "a")), "aaaa");  // the file entry stays one
}

INSTANTIATE_TEST_SUITE_P(Layouts, CacheTest, ::testing::Values(false, true),
                         [](const auto& i) { return i.param ? "Packed" : "Files"; });
INSTANTIATE_TEST_SUITE_P(Layouts, FileLayoutTest, ::testing::Values(false),
                         [](const auto&) { return "Files"; });
INSTANTIATE_TEST_SUITE_P(Layouts, PackTest, ::testing::Values(true),
                         [](const auto&) { return "Packed"; });

}  // namespace
}  // namespace hylab::storage
