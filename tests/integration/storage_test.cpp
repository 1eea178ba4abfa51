// Hybrid storage end to end: the real `hylab data` binary against a real S3-speaking server
// (s3rver from npm, started on 127.0.0.1 by this test), with boto3 as an independent second
// client that reads what hylab wrote and writes what hylab reads.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "process.h"
#include "serve_harness.h"

namespace hylab::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

const std::string kSource = HYLAB_SOURCE_DIR;

void write_file(const std::string& path, const std::string& data) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << data;
}

std::string random_bytes(std::size_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; i += 8) {
    std::uint64_t v = rng();
    std::memcpy(s.data() + i, &v, std::min<std::size_t>(8, n - i));
  }
  return s;
}

// Bytes in the cache's data and temporary files, and on the disk in its packs (holes
// excluded): what the bound limits.
std::uint64_t cache_bytes(const fs::path& dir) {
  std::uint64_t total = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    std::string name = it->path().filename().string();
    std::string ext = it->path().extension().string();  // downloads: ID.partN
    struct stat st {};
    if (ext == ".pack" && ::stat(it->path().c_str(), &st) == 0) {
      total += static_cast<std::uint64_t>(st.st_blocks) * 512;
      continue;
    }
    bool counted =
        ext == ".data" || ext.starts_with(".part") || it->path().parent_path().filename() == "tmp";
    if (!counted) continue;
    auto size = it->file_size(ec);
    if (!ec) total += size;
    ec.clear();
  }
  return total;
}

// s3rver on a free port with its own data folder, for the whole suite.
class S3rver {
 public:
  // `extra`: more s3rver arguments (--cert/--key for HTTPS, --configure-bucket NAME).
  explicit S3rver(const fs::path& dir, std::vector<std::string> extra = {}) : dir_(dir) {
    fs::create_directories(dir_ / "data");
    std::string log = (dir_ / "s3rver.log").string();
    std::vector<std::string> argv{
        "node",    kSource + "/tests/s3rver/node_modules/s3rver/bin/s3rver.js",
        "-d",      (dir_ / "data").string(),
        "-a",      "127.0.0.1",
        "-p",      "0",
        "--silent"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    https_ = std::find(extra.begin(), extra.end(), "--cert") != extra.end();
    proc_.start(argv, log, {"NODE_OPTIONS=--openssl-legacy-provider"});
    // It prints "S3rver listening on 127.0.0.1:PORT" once it accepts connections.
    bool up = wait_until([&] {
      std::string text = read_file(log);
      auto at = text.find("127.0.0.1:");
      if (at == std::string::npos) return false;
      port_ = std::atoi(text.c_str() + at + 10);
      return port_ > 0;
    });
    if (!up) ADD_FAILURE() << "s3rver did not start: " << read_file(log);
  }
  std::string endpoint() const {
    return fmt::format("{}://127.0.0.1:{}", https_ ? "https" : "http", port_);
  }

 private:
  bool https_ = false;
  fs::path dir_;
  Process proc_;
  int port_ = 0;
};

class StorageTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new fs::path(fs::temp_directory_path() / fmt::format("hylab-storage-{}", ::getpid()));
    fs::remove_all(*root_);
    fs::create_directories(*root_);
    server_ = new S3rver(*root_ / "s3rver");
  }
  static void TearDownTestSuite() {
    delete server_;
    std::error_code ec;
    fs::remove_all(*root_, ec);
    delete root_;
  }

  void SetUp() override {
    static int n = 0;
    bucket_ = fmt::format("bucket-{}", n++);
    dir_ = *root_ / bucket_;
    fs::create_directories(dir_);
    auto r = peer({"create-bucket", bucket_});
    ASSERT_EQ(r.code, 0) << r.err;
    configure("");
  }

  // The test's hylab.yaml: s3rver, a cache in the test folder, plus `extra` keys.
  void configure(const std::string& extra) {
    write_file(path("hylab.yaml"), fmt::format("storage:\n  endpoint_url: {}\n  cache_dir: {}\n{}",
                                               server_->endpoint(), path("cache"), extra));
  }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::string uri(const std::string& key) const { return fmt::format("s3://{}/{}", bucket_, key); }

  Ran hylab(std::vector<std::string> args, std::vector<std::string> env = {}) {
    std::vector<std::string> argv{HYLAB_BINARY, "--config", path("hylab.yaml")};
    argv.insert(argv.end(), args.begin(), args.end());
    env.insert(env.begin(), {"AWS_ACCESS_KEY_ID=S3RVER", "AWS_SECRET_ACCESS_KEY=S3RVER",
                             "AWS_ENDPOINT_URL=", "AWS_PROFILE="});
    return run_command(argv, env, dir_.string());
  }

  Ran peer(std::vector<std::string> args) {
    std::vector<std::string> argv{"python3", kSource + "/tests/integration/s3_peer.py",
                                  server_->endpoint()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv, {}, dir_.string());
  }

  boost::json::value json_of(const Ran& r) {
    boost::system::error_code ec;
    auto v = boost::json::parse(r.out, ec);
    EXPECT_FALSE(ec) << "not JSON: " << r.out << r.err;
    return v;
  }

  // slow_link.py in front of s3rver (see there), recording to link.rec; its port.
  std::string start_link(Process& link, std::vector<std::string> args) {
    std::string s3 = server_->endpoint();
    std::ofstream(path("link.rec")).close();
    std::vector<std::string> argv{"python3",     kSource + "/tests/integration/slow_link.py",
                                  "--upstream",  s3.substr(s3.rfind(':') + 1),
                                  "--port-file", path("link.port"),
                                  "--record",    path("link.rec")};
    argv.insert(argv.end(), args.begin(), args.end());
    link.start(argv, path("link.log"));
    EXPECT_TRUE(wait_until([&] { return fs::exists(path("link.port")); }));
    return read_file(path("link.port"));
  }
  // The requests the link saw, in the order it answered them.
  std::vector<boost::json::object> link_records() {
    std::vector<boost::json::object> out;
    std::istringstream in(read_file(path("link.rec")));
    for (std::string line; std::getline(in, line);)
      out.push_back(boost::json::parse(line).as_object());
    return out;
  }

  static fs::path* root_;
  static S3rver* server_;
  std::string bucket_;
  fs::path dir_;
};

fs::path* StorageTest::root_ = nullptr;
S3rver* StorageTest::server_ = nullptr;

TEST_F(StorageTest, WhatHylabWritesBoto3ReadsAndTheOtherWayRound) {
  configure("  multipart_threshold: 5MiB\n  part_size: 5MiB\n");
  std::string small = "hello from the lab\n";
  std::string big = random_bytes(12 << 20, 1);  // 3 parts, uploaded in parallel
  write_file(path("small.txt"), small);
  write_file(path("big.bin"), big);
  const std::string odd = "runs/2026 11/naïve+plus~tilde=eq.txt";  // encoded in the signature
  auto r = hylab({"data", "put", path("small.txt"), uri(odd)});
  ASSERT_EQ(r.code, 0) << r.err;
  r = hylab({"data", "put", path("big.bin"), uri("models/")});
  ASSERT_EQ(r.code, 0) << r.err;

  r = peer({"get", bucket_, odd, path("small.boto3")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(read_file(path("small.boto3")), small);
  r = peer({"get", bucket_, "models/big.bin", path("big.boto3")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(read_file(path("big.boto3")) == big);
  // hylab stores the sha256 with each object, for readers to check.
  r = peer({"head", bucket_, "models/big.bin"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json_of(r).at("metadata").at("sha256").as_string().size(), 64u);

  // boto3 writes, hylab reads: one GET each (on loopback one stream is fast enough not to be
  // split into ranges: that is tested through a slow link below).
  write_file(path("from-boto3.bin"), big.substr(0, 7 << 20));
  ASSERT_EQ(peer({"put", bucket_, "in/from boto3.bin", path("from-boto3.bin")}).code, 0);
  r = hylab({"data", "get", uri("in/from boto3.bin"), path("got.bin"), "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json_of(r).at("cache").as_string(), "downloaded");
  EXPECT_TRUE(read_file(path("got.bin")) == big.substr(0, 7 << 20));
  r = hylab({"data", "get", uri(odd), "-"});  // standard output
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, small);

  r = hylab({"data", "ls", uri(""), "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto list = json_of(r).as_array();
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0].at("key").as_string(), "in/from boto3.bin");
  EXPECT_EQ(list[1].at("key").as_string(), "models/big.bin");
  EXPECT_EQ(list[1].at("size").as_int64(), 12 << 20);
  EXPECT_EQ(list[2].at("key").as_string(), odd);

  r = hylab({"data", "rm", uri(odd)});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(peer({"head", bucket_, odd}).code, 3);
  r = hylab({"data", "get", uri("no/such/key"), path("x")});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("no such object"));
}

// A listing tells neither an object's stored sha256 nor whether it has one: the download
// learns it from the answer's headers and checks that, not only the MD5 ETag (which a
// wrong sha256 would pass).
TEST_F(StorageTest, ADownloadChecksTheSha256ItsHeadersAnnounce) {
  configure("");
  std::string body = random_bytes(100 << 10, 7);
  write_file(path("obj.bin"), body);
  std::string wrong(64, 'a');
  ASSERT_EQ(peer({"put", bucket_, "check/bad.bin", path("obj.bin"), wrong}).code, 0);
  ASSERT_EQ(peer({"put", bucket_, "check/plain.bin", path("obj.bin")}).code, 0);
  auto r = hylab({"data", "get", uri("check/"), path("out")});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("integrity check failed: sha256"));
  EXPECT_THAT(r.err, HasSubstr(wrong));
  EXPECT_FALSE(fs::exists(path("out/bad.bin")));
  EXPECT_EQ(read_file(path("out/plain.bin")), body);  // checked by its MD5 ETag
  // Without the cache, the same checks.
  r = hylab({"data", "get", uri("check/bad.bin"), path("one.bin"), "--no-cache"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("integrity check failed: sha256"));
  EXPECT_FALSE(fs::exists(path("one.bin")));
  r = hylab({"data", "get", uri("check/"), path("nc"), "--no-cache"});
  EXPECT_EQ(r.code, 1);
  EXPECT_FALSE(fs::exists(path("nc/bad.bin")));
  EXPECT_EQ(read_file(path("nc/plain.bin")), body);
}

TEST_F(StorageTest, SyncBothWaysComparesBySizeAndHashAndPaginates) {
  // 1005 files: more than one listing page (1000 keys).
  for (int i = 0; i < 1005; ++i)
    write_file(path(fmt::format("tree/d{}/f{}.txt", i % 7, i)), fmt::format("file {}\n", i));
  auto r = hylab({"data", "sync", path("tree"), uri("ds"), "--parallel", "16", "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json_of(r).at("uploaded").as_int64(), 1005);
  r = peer({"count", bucket_, "ds/"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(std::stoi(r.out), 1005);
  r = hylab({"data", "ls", uri("ds/"), "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json_of(r).as_array().size(), 1005u);

  // Nothing changed: nothing moves. Same size, other bytes: found by hash.
  r = hylab({"data", "sync", path("tree"), uri("ds"), "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json_of(r).at("uploaded").as_int64(), 0);
  EXPECT_EQ(json_of(r).at("skipped").as_int64(), 1005);
  write_file(path("tree/d3/f3.txt"), "file X\n");
  fs::remove(path("tree/d0/f0.txt"));
  r = hylab({"data", "sync", path("tree"), uri("ds"), "--delete", "--dry-run", "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json_of(r).at("uploaded").as_int64(), 1);
  EXPECT_EQ(json_of(r).at("deleted").as_int64(), 1);
  EXPECT_EQ(std::stoi(peer({"count", bucket_, "ds/"}).out), 1005);  // a dry run changes nothing
  r = hylab({"data", "sync", path("tree"), uri("ds"), "--delete", "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json_of(r).at("uploaded").as_int64(), 1);
  EXPECT_EQ(json_of(r).at("deleted").as_int64(), 1);
  EXPECT_EQ(std::stoi(peer({"count", bucket_, "ds/"}).out), 1004);
  ASSERT_EQ(peer({"get", bucket_, "ds/d3/f3.txt", path("f3")}).code, 0);
  EXPECT_EQ(read_file(path("f3")), "file X\n");

  // Down: every file, then only what differs; --delete removes local extras.
  r = hylab({"data", "sync", uri("ds/"), path("copy"), "--parallel", "16", "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json_of(r).at("downloaded").as_int64(), 1004);
  EXPECT_EQ(read_file(path("copy/d3/f3.txt")), "file X\n");
  EXPECT_EQ(read_file(path("copy/d5/f5.txt")), "file 5\n");
  write_file(path("copy/d5/f5.txt"), "file Y\n");
  write_file(path("copy/extra.txt"), "not in the bucket\n");
  r = hylab({"data", "sync", uri("ds/"), path("copy"), "--delete", "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json_of(r).at("downloaded").as_int64(), 1);
  EXPECT_EQ(json_of(r).at("deleted").as_int64(), 1);
  EXPECT_EQ(read_file(path("copy/d5/f5.txt")), "file 5\n");
  EXPECT_FALSE(fs::exists(path("copy/extra.txt")));
}

TEST_F(StorageTest, SensitiveDataNeverLeaves) {
  configure("  sensitive: [patients, '**/*.key']\n  shareable: [patients/summary.csv]\n");
  write_file(path("patients/records.csv"), "id,diagnosis\n1,flu\n");
  write_file(path("patients/summary.csv"), "cases\n1\n");
  write_file(path("patients/scans/1.dcm"), "DICM");
  write_file(path("results/model.key"), "secret");
  write_file(path("results/metrics.json"), "{}");

  auto r = hylab({"data", "put", path("patients/records.csv"), uri("leak.csv")});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("refused"));
  EXPECT_THAT(r.err, HasSubstr("patients/records.csv is sensitive"));
  EXPECT_EQ(peer({"head", bucket_, "leak.csv"}).code, 3);  // not a byte went up

  // A folder sync takes only what may leave; the refusal makes it fail loudly.
  r = hylab({"data", "sync", path("patients"), uri("p"), "-o", "json"});
  EXPECT_EQ(r.code, 2);
  auto rep = json_of(r);
  EXPECT_EQ(rep.at("uploaded").as_int64(), 1);
  EXPECT_EQ(rep.at("refused").as_int64(), 2);
  EXPECT_EQ(peer({"count", bucket_, "p/"}).out, "1\n");
  EXPECT_EQ(peer({"head", bucket_, "p/summary.csv"}).code, 0);
  r = hylab({"data", "sync", path("results"), uri("r")});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("model.key is sensitive"));
  EXPECT_EQ(peer({"head", bucket_, "r/metrics.json"}).code, 0);
  EXPECT_EQ(peer({"head", bucket_, "r/model.key"}).code, 3);

  r = hylab({"data", "cache", "stats", "--format", "prometheus"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("hylab_storage_refused_uploads_total 4\n"));
}

TEST_F(StorageTest, AChangedObjectIsNeverServedStale) {
  configure("  revalidate_after: 0s\n");
  write_file(path("v1"), "version one\n");
  write_file(path("v2"), "version two, longer\n");
  ASSERT_EQ(peer({"put", bucket_, "cfg.txt", path("v1")}).code, 0);
  auto get = [&] {
    auto r = hylab({"data", "get", uri("cfg.txt"), path("out.txt"), "-o", "json"});
    EXPECT_EQ(r.code, 0) << r.err;
    return std::string(json_of(r).at("cache").as_string());
  };
  EXPECT_EQ(get(), "downloaded");
  EXPECT_EQ(get(), "revalidated");  // If-None-Match: 304, the cached bytes are current
  EXPECT_EQ(read_file(path("out.txt")), "version one\n");
  ASSERT_EQ(peer({"put", bucket_, "cfg.txt", path("v2")}).code, 0);
  EXPECT_EQ(get(), "downloaded");
  EXPECT_EQ(read_file(path("out.txt")), "version two, longer\n");
  // Within revalidate_after the cache answers alone.
  configure("  revalidate_after: 1h\n");
  EXPECT_EQ(get(), "hit");
}

TEST_F(StorageTest, TheCacheStaysUnderItsBoundUnderConcurrentLoad) {
  configure("  cache_max_size: 1MiB\n");
  for (int i = 0; i < 40; ++i)
    write_file(path(fmt::format("set/o{:02}", i)), random_bytes(100 << 10, 10 + i));
  ASSERT_EQ(hylab({"data", "sync", path("set"), uri("set")}).code, 0);
  std::atomic<bool> done{false};
  std::uint64_t most = 0;
  std::thread watch([&] {
    while (!done) most = std::max(most, cache_bytes(path("cache")));
  });
  auto r = hylab({"data", "get", uri("set/"), path("out"), "--parallel", "8", "-o", "json"});
  done = true;
  watch.join();
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json_of(r).at("downloaded").as_int64(), 40);
  // Plus what 8 workers may hold: an entry evicted while a worker still copies it out keeps
  // its bytes until the copy ends (in a pack until its hole is punched; as a data file it is
  // unlinked at once and keeps them unseen by this count).
  EXPECT_LE(most, (1u << 20) + 8 * (100u << 10)) << "the cache went over its bound";
  EXPECT_GT(most, 0u);
  for (int i = 0; i < 40; ++i)
    EXPECT_TRUE(read_file(path(fmt::format("out/o{:02}", i))) == random_bytes(100 << 10, 10 + i))
        << i;
  r = hylab({"data", "cache", "stats", "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto st = json_of(r);
  EXPECT_LE(st.at("bytes").as_int64(), 1 << 20);
  EXPECT_GE(st.at("evictions").as_int64(), 30);
  EXPECT_EQ(st.at("entries").as_int64(), 10);
}

TEST_F(StorageTest, AKilledDownloadIsNeverServedHalfDone) {
  std::string big = random_bytes(128 << 20, 7);
  write_file(path("big.bin"), big);
  ASSERT_EQ(hylab({"data", "put", path("big.bin"), uri("big.bin")}).code, 0);
  fs::remove(path("big.bin"));
  Process get;
  get.start({HYLAB_BINARY, "--config", path("hylab.yaml"), "data", "get", uri("big.bin"),
             path("got.bin"), "--parallel", "1"},
            path("get.log"), {"AWS_ACCESS_KEY_ID=S3RVER", "AWS_SECRET_ACCESS_KEY=S3RVER"});
  // Kill it once part of the object is on disk.
  bool partial = wait_until([&] { return cache_bytes(path("cache")) > (1u << 20); }, 60);
  get.stop(SIGKILL);
  ASSERT_TRUE(partial) << read_file(path("get.log"));
  EXPECT_LT(cache_bytes(path("cache")), big.size()) << "the download finished before the kill";
  EXPECT_FALSE(fs::exists(path("got.bin")));

  auto r = hylab({"data", "cache", "stats", "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json_of(r).at("entries").as_int64(), 0);  // nothing half-done became an entry
  EXPECT_EQ(cache_bytes(path("cache")), 0u);          // and the leftovers are gone
  r = hylab({"data", "get", uri("big.bin"), path("got.bin"), "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json_of(r).at("cache").as_string(), "downloaded");
  EXPECT_TRUE(read_file(path("got.bin")) == big);
}

TEST_F(StorageTest, PinnedObjectsSurviveEvictionAndClear) {
  configure("  cache_max_size: 300KiB\n");
  for (int i = 0; i < 4; ++i)
    write_file(path(fmt::format("p/o{}", i)), random_bytes(100 << 10, 40 + i));
  ASSERT_EQ(hylab({"data", "sync", path("p"), uri("p")}).code, 0);
  auto r = hylab({"data", "cache", "pin", uri("p/o0")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("pinned 1 object"));
  ASSERT_EQ(hylab({"data", "get", uri("p/"), path("out")}).code, 0);  // evicts, but not o0
  r = hylab({"data", "get", uri("p/o0"), path("o0"), "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json_of(r).at("cache").as_string(), "hit");
  r = hylab({"data", "cache", "evict", "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  r = hylab({"data", "cache", "stats", "-o", "json"});
  EXPECT_EQ(json_of(r).at("entries").as_int64(), 1);
  EXPECT_EQ(json_of(r).at("pinned_bytes").as_int64(), 100 << 10);
  ASSERT_EQ(hylab({"data", "cache", "clear"}).code, 0);
  r = hylab({"data", "cache", "stats", "-o", "json"});
  EXPECT_EQ(json_of(r).at("entries").as_int64(), 0);
}

TEST_F(StorageTest, BadInputSaysWhatIsWrong) {
  auto r = hylab({"data", "get", "gs://bucket/key"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("only s3://, file:// and local paths"));
  r = hylab({"data", "ls", "s3:///key"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("no bucket"));
  r = hylab({"data", "put", path("missing.txt"), uri("x")});
  EXPECT_NE(r.code, 0);
  EXPECT_THAT(r.err, HasSubstr("missing.txt"));
  // No credentials anywhere: say where hylab looked; never print a secret.
  r = hylab({"data", "ls", uri("")}, {"AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=",
                                      "AWS_SHARED_CREDENTIALS_FILE=" + path("nowhere")});
  EXPECT_NE(r.code, 0);
  EXPECT_THAT(r.err, HasSubstr("AWS_ACCESS_KEY_ID"));
  write_file(path("hylab.yaml"), "storage:\n  cache_max_size: 0\n");
  r = hylab({"data", "cache", "stats"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("hylab.yaml:2"));
  EXPECT_THAT(r.err, HasSubstr("storage.cache_max_size"));
}

TEST_F(StorageTest, HttpsEndpointsAreVerifiedWithTheAwsCaBundle) {
  std::string cert = path("cert.pem"), key = path("key.pem");
  std::string cmd = fmt::format(
      "openssl req -x509 -newkey rsa:2048 -nodes -keyout {} -out {} -days 1 -subj /CN=127.0.0.1 "
      "-addext subjectAltName=IP:127.0.0.1 > {} 2>&1",
      key, cert, path("openssl.log"));
  ASSERT_EQ(std::system(cmd.c_str()), 0) << read_file(path("openssl.log"));
  S3rver tls(dir_ / "tls", {"--cert", cert, "--key", key, "--configure-bucket", "secure"});
  write_file(path("hylab.yaml"), fmt::format("storage:\n  endpoint_url: {}\n  cache_dir: {}\n",
                                             tls.endpoint(), path("cache")));
  write_file(path("hello.txt"), "over TLS\n");
  // Trusted through AWS_CA_BUNDLE, as the AWS CLI and SDKs do.
  auto r =
      hylab({"data", "put", path("hello.txt"), "s3://secure/hello.txt"}, {"AWS_CA_BUNDLE=" + cert});
  ASSERT_EQ(r.code, 0) << r.err;
  r = hylab({"data", "get", "s3://secure/hello.txt", "-"}, {"AWS_CA_BUNDLE=" + cert});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "over TLS\n");
  // Without it the self-signed certificate is refused, and the error says so.
  r = hylab({"data", "ls", "s3://secure/"},
            {"AWS_CA_BUNDLE=", "SSL_CERT_FILE=", "CURL_CA_BUNDLE=", "SSL_CERT_DIR="});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("certificate"));
}

TEST_F(StorageTest, ServerErrorsAreRetriedWithBackOffAndOthersAreNot) {
  // An endpoint that answers every request with one status (503 is S3's SlowDown).
  auto serve = [&](int status) {
    auto p = std::make_unique<Process>();
    std::string name = fmt::format("s{}", status);
    std::ofstream(path(name + ".rec")).close();
    p->start(
        {"python3", kSource + "/tests/integration/upstream.py", "--name", name, "--port-file",
         path(name + ".port"), "--record", path(name + ".rec"), "--status", std::to_string(status)},
        path(name + ".log"));
    EXPECT_TRUE(wait_until([&] { return fs::exists(path(name + ".port")); }));
    write_file(path("hylab.yaml"),
               fmt::format("storage:\n  endpoint_url: http://127.0.0.1:{}\n  cache_dir: {}\n",
                           read_file(path(name + ".port")), path("cache")));
    return p;
  };
  auto requests = [&](int status) {
    std::string rec = read_file(path(fmt::format("s{}.rec", status)));
    return std::count(rec.begin(), rec.end(), '\n');
  };
  {
    auto p = serve(503);
    auto r = hylab({"data", "ls", uri("")});
    EXPECT_EQ(r.code, 1);
    EXPECT_THAT(r.err, HasSubstr("answered 503"));
    EXPECT_EQ(requests(503), 5);  // 5 attempts, then the error
  }
  for (int status : {500, 429}) {  // a server error; throttling
    auto p = serve(status);
    EXPECT_EQ(hylab({"data", "ls", uri("")}).code, 1);
    EXPECT_EQ(requests(status), 5) << status;
  }
  {
    auto p = serve(403);  // a refusal is final
    auto r = hylab({"data", "ls", uri("")});
    EXPECT_EQ(r.code, 2);
    EXPECT_THAT(r.err, HasSubstr("answered 403"));
    EXPECT_EQ(requests(403), 1);
  }
}

TEST_F(StorageTest, ASlowStreamIsSplitIntoRangesAndAThrottledRangeIsRetriedInPlace) {
  // A link that gives each connection 16 MiB/s, like a far region: 32 MiB would take one
  // stream 2 s, so the first stream is stopped and the rest fetched as 5 MiB ranges, 4 at
  // once. The first ranged request is throttled (503) once, 300 ms in: its retry must not
  // cut off the ranges written past it meanwhile (the file is checked against its MD5 ETag).
  std::string big = random_bytes(32 << 20, 5);
  write_file(path("big.bin"), big);
  ASSERT_EQ(peer({"put", bucket_, "far/big.bin", path("big.bin")}).code, 0);
  Process link;
  std::string port = start_link(
      link, {"--rate", std::to_string(16 << 20), "--fail-ranged", "1", "--fail-delay-ms", "300"});
  auto use = [&](const std::string& extra) {
    write_file(path("hylab.yaml"),
               fmt::format("storage:\n  endpoint_url: http://127.0.0.1:{}\n  cache_dir: {}\n"
                           "  multipart_threshold: 5MiB\n  part_size: 5MiB\n  parallel: 4\n{}",
                           port, path("cache"), extra));
    std::ofstream(path("link.rec"), std::ios::trunc).close();
  };
  struct Seen {
    int whole = 0, ranged = 0, throttled = 0;
  };
  auto seen = [&] {
    Seen s;
    for (const auto& v : link_records()) {
      if (v.at("method").as_string() != "GET") continue;
      bool ranged = !v.at("range").as_string().empty();
      int status = static_cast<int>(v.at("status").as_int64());
      if (status == 503)
        ++s.throttled;
      else if (ranged && status == 206)
        ++s.ranged;
      else if (!ranged && status == 200)
        ++s.whole;
    }
    return s;
  };
  use("");
  auto r = hylab({"data", "get", uri("far/big.bin"), path("got.bin"), "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json_of(r).at("cache").as_string(), "downloaded");
  EXPECT_TRUE(read_file(path("got.bin")) == big);
  Seen s = seen();
  EXPECT_EQ(s.whole, 1);  // the first stream, stopped where the ranges begin
  EXPECT_EQ(s.throttled, 1);
  EXPECT_GE(s.ranged, 2);  // the rest: 5 MiB ranges
  // Without the cache, the same.
  r = hylab({"data", "get", uri("far/big.bin"), path("nc.bin"), "--no-cache"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(read_file(path("nc.bin")) == big);
  EXPECT_GE(seen().ranged, 2);
  // split_below: 0 keeps one stream however slow.
  use("  split_below: 0\n");
  r = hylab({"data", "get", uri("far/big.bin"), path("one.bin"), "--no-cache"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(read_file(path("one.bin")) == big);
  s = seen();
  EXPECT_EQ(s.whole, 1);
  EXPECT_EQ(s.ranged + s.throttled, 0);
}

TEST_F(StorageTest, DownloadsStartWhileTheListingGoesOn) {
  // 1005 objects: two listing pages. The link holds the second page's request 700 ms; the
  // first page's objects are downloaded meanwhile (a prefix of a million keys is a thousand
  // pages: waiting for all of them would delay the first byte by minutes).
  for (int i = 0; i < 1005; ++i)
    write_file(path(fmt::format("tree/f{:04}.txt", i)), fmt::format("file {}\n", i));
  auto r = hylab({"data", "sync", path("tree"), uri("ds"), "--parallel", "16"});
  ASSERT_EQ(r.code, 0) << r.err;
  Process link;
  std::string port =
      start_link(link, {"--rate", std::to_string(1 << 30), "--delay-continued-list-ms", "700"});
  write_file(path("hylab.yaml"),
             fmt::format("storage:\n  endpoint_url: http://127.0.0.1:{}\n  cache_dir: {}\n", port,
                         path("cache")));
  r = hylab({"data", "get", uri("ds/"), path("out"), "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json_of(r).at("downloaded").as_int64(), 1005);
  for (int i : {0, 999, 1000, 1004})
    EXPECT_EQ(read_file(path(fmt::format("out/f{:04}.txt", i))), fmt::format("file {}\n", i));
  int gets_before_second_page = -1, gets = 0;
  for (const auto& v : link_records()) {
    std::string_view p = v.at("path").as_string();
    if (p.find("continuation-token=") != std::string_view::npos) gets_before_second_page = gets;
    if (v.at("method").as_string() == "GET" && p.find("list-type") == std::string_view::npos)
      ++gets;
  }
  EXPECT_EQ(gets, 1005);
  EXPECT_GT(gets_before_second_page, 0);  // the first page's downloads did not wait for it
  // A sync down into the same folder: everything compared, nothing moves.
  r = hylab({"data", "sync", uri("ds/"), path("out"), "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json_of(r).at("downloaded").as_int64(), 0);
  EXPECT_EQ(json_of(r).at("skipped").as_int64(), 1005);
}

TEST_F(StorageTest, AFullDiskIsAClearErrorAndLeavesNothingBehind) {
  write_file(path("big.bin"), random_bytes(8 << 20, 3));
  ASSERT_EQ(hylab({"data", "put", path("big.bin"), uri("big.bin")}).code, 0);
  // The disk cannot be filled here; a file-size limit makes the same write fail (EFBIG).
  auto r = hylab({"data", "get", uri("big.bin"), path("got.bin")});
  ASSERT_EQ(r.code, 0) << r.err;  // it works without the limit
  ASSERT_EQ(hylab({"data", "cache", "clear"}).code, 0);
  fs::remove(path("got.bin"));
  std::vector<std::string> argv{"prlimit",
                                "--fsize=1048576",
                                HYLAB_BINARY,
                                "--config",
                                path("hylab.yaml"),
                                "data",
                                "get",
                                uri("big.bin"),
                                path("got.bin"),
                                "--parallel",
                                "1"};
  r = run_command(argv, {"AWS_ACCESS_KEY_ID=S3RVER", "AWS_SECRET_ACCESS_KEY=S3RVER"},
                  dir_.string());
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("cannot write the download: File too large"));
  EXPECT_FALSE(fs::exists(path("got.bin")));
  EXPECT_EQ(cache_bytes(path("cache")), 0u);  // no partial data, no temporary file
  r = hylab({"data", "cache", "stats", "-o", "json"});
  EXPECT_EQ(json_of(r).at("entries").as_int64(), 0);
}

}  // namespace
}  // namespace hylab::testing
