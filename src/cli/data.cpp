// `hylab data` (see data.h).
#include "cli/data.h"

#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <thread>

#include "cli/app.h"
#include "cli/output.h"
#include "common/units.h"
#include "storage/cache.h"
#include "storage/file_util.h"
#include "storage/object_store.h"
#include "storage/policy.h"
#include "storage/transfer.h"
#include "telemetry/metrics.h"

namespace hylab::cli {

namespace json = boost::json;
namespace fs = std::filesystem;
using namespace hylab::storage;  // NOLINT(google-build-using-namespace): this file is its UI

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// A progress line on standard error: bytes, share, rate and time left, redrawn 4 times a
// second while a transfer runs (only on a terminal, or with --progress).
class ProgressLine {
 public:
  ProgressLine(bool on, std::ostream& err) : on_(on), err_(err) {}
  ~ProgressLine() { stop(); }
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;

  ProgressFn fn() {
    return [this](std::uint64_t n) { done_.fetch_add(n, std::memory_order_relaxed); };
  }
  void set_total(std::uint64_t bytes, std::uint64_t files) {  // also while it is drawn
    total_ = bytes;
    files_ = files;
  }
  void start() {
    if (!on_) return;
    t0_ = std::chrono::steady_clock::now();
    thread_ = std::thread([this] {
      std::unique_lock lk(mu_);
      while (!cv_.wait_for(lk, std::chrono::milliseconds(250), [&] { return stopping_; }))
        draw(false);
    });
  }
  void stop() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard lk(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
    draw(true);
  }
  std::uint64_t done() const { return done_.load(); }

 private:
  void draw(bool last) {
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    std::uint64_t d = done_.load();
    double rate = secs > 0 ? static_cast<double>(d) / secs : 0;
    std::uint64_t total = total_, files = files_;
    std::string line = fmt::format("{:>10}", format_bytes(d));
    if (total > 0) {
      line += fmt::format(" / {} {:3.0f}%", format_bytes(total),
                          100.0 * static_cast<double>(d) / static_cast<double>(total));
    }
    line += fmt::format("  {}/s", format_bytes(static_cast<std::uint64_t>(rate)));
    if (total > d && rate > 0) {
      line += fmt::format("  ETA {:.0f}s", static_cast<double>(total - d) / rate);
    }
    if (files > 1) line += fmt::format("  ({} files)", files);
    err_ << "\r\033[K" << line << (last ? "\n" : "") << std::flush;
  }

  bool on_;
  std::ostream& err_;
  std::atomic<std::uint64_t> done_{0};
  std::atomic<std::uint64_t> total_{0}, files_{0};
  std::chrono::steady_clock::time_point t0_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

struct Context {
  const Config& cfg;
  bool json;
  std::ostream& out;
  std::ostream& err;
  S3Options s3;
  SensitivityRules rules;
  int parallel;
};

int fail(Context& c, const Error& e) {
  c.err << "error: " << e.message << "\n";
  return e.code == Errc::kInvalidInput ? kExitBadInput : kExitFailure;
}

// The store a location lives in and the key inside it. file:// locations are the fs
// backend rooted at "/".
Result<std::unique_ptr<ObjectStore>> store_for(Context& c, const Location& loc) {
  if (loc.kind == Location::Kind::kS3) return make_s3_store(loc.bucket, c.s3);
  return make_fs_store("/");
}

std::string key_of(const Location& loc) {
  if (loc.kind == Location::Kind::kS3) return loc.key;
  std::string k = loc.key;
  while (!k.empty() && k.front() == '/') k.erase(0, 1);
  return k;
}

bool is_remote_uri(const std::string& s) {
  return s.rfind("s3://", 0) == 0 || s.rfind("file://", 0) == 0;
}

std::string cache_dir_of(const StorageConfig& st) { return default_cache_dir(st.cache_dir); }

Result<std::unique_ptr<Cache>> open_cache(const StorageConfig& st) {
  CacheOptions co;
  co.dir = cache_dir_of(st);
  co.max_bytes = st.cache_max_size;
  co.max_age_seconds = st.cache_max_age_seconds;
  co.revalidate_after_seconds = st.revalidate_after_seconds;
  return Cache::open(co);
}

std::string_view kind_name(FetchKind k) {
  switch (k) {
    case FetchKind::kHit:
      return "hit";
    case FetchKind::kRevalidated:
      return "revalidated";
    case FetchKind::kDownloaded:
      return "downloaded";
  }
  return "?";
}

json::object report_json(const TransferReport& r, double secs) {
  json::object o;
  o["uploaded"] = r.uploaded;
  o["downloaded"] = r.downloaded;
  o["deleted"] = r.deleted;
  o["skipped"] = r.skipped;
  o["refused"] = r.refused;
  o["failed"] = r.failed;
  o["bytes"] = r.bytes;
  o["seconds"] = secs;
  json::array items;
  for (const auto& i : r.items) {
    json::object it;
    it["action"] = std::string(action_name(i.action));
    it["key"] = i.key;
    it["local"] = i.local;
    it["size"] = i.size;
    it["reason"] = i.reason;
    if (!i.error.empty()) it["error"] = i.error;
    items.push_back(std::move(it));
  }
  o["items"] = std::move(items);
  return o;
}

int print_report(Context& c, const TransferReport& r, double secs, bool dry_run) {
  if (c.json) {
    auto o = report_json(r, secs);
    o["dry_run"] = dry_run;
    c.out << pretty_json(o);
  } else {
    for (const auto& i : r.items) {
      if (!i.error.empty()) {
        c.err << fmt::format("error: {}: {}\n", i.key.empty() ? i.local : i.key, i.error);
      } else if (i.action == Action::kRefused) {
        c.err << "error: " << i.reason << "\n";
      } else if (dry_run && i.action != Action::kSkip) {
        c.out << fmt::format("would {} {} ({}, {})\n", action_name(i.action),
                             i.action == Action::kUpload ? i.local : i.key, format_bytes(i.size),
                             i.reason);
      }
    }
    c.out << fmt::format(
        "{}{} uploaded, {} downloaded, {} deleted, {} unchanged, {} refused, {} failed; {} in "
        "{:.2f} s\n",
        dry_run ? "dry run: " : "", r.uploaded, r.downloaded, r.deleted, r.skipped, r.refused,
        r.failed, format_bytes(r.bytes), secs);
  }
  if (r.refused > 0) return kExitBadInput;
  return r.failed > 0 ? kExitFailure : kExitOk;
}

double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

void DataCommand::add(CLI::App& app) {
  data_ = app.add_subcommand("data", "object storage through the local cache (s3://, file://)");
  data_->require_subcommand(1);
  data_->add_option("--endpoint-url", endpoint_url_,
                    "S3 endpoint (default: $AWS_ENDPOINT_URL, then storage.endpoint_url)");
  data_->add_option("--parallel", parallel_, "transfers at once (default: storage.parallel)")
      ->check(CLI::Range(1, 256));
  data_->add_flag("--progress", progress_, "show progress even when stderr is not a terminal");

  get_ = data_->add_subcommand("get", "download an object, or every object under a prefix/");
  get_->add_option("uri", a_, "s3://bucket/key, s3://bucket/prefix/ or file:///path")->required();
  get_->add_option("dest", b_, "local file or folder ('-': standard output; default: here)");
  get_->add_flag("--no-cache", no_cache_, "straight to the destination, not through the cache");

  put_ = data_->add_subcommand("put", "upload a file (sensitive paths are refused)");
  put_->add_option("src", a_, "local file")->required();
  put_->add_option("uri", b_, "s3://bucket/key (a trailing / keeps the file's name)")->required();

  ls_ = data_->add_subcommand("ls", "list objects under a prefix");
  ls_->add_option("uri", a_, "s3://bucket/prefix")->required();

  rm_ = data_->add_subcommand("rm", "delete an object (or a prefix with --recursive)");
  rm_->add_option("uri", a_, "s3://bucket/key")->required();
  rm_->add_flag("-r,--recursive", recursive_, "every object under the prefix");

  sync_ = data_->add_subcommand("sync", "make DST like SRC (a local folder and a prefix)");
  sync_->add_option("src", a_, "local folder or s3://bucket/prefix")->required();
  sync_->add_option("dst", b_, "s3://bucket/prefix or local folder")->required();
  sync_->add_flag("--delete", delete_, "remove from DST what SRC does not have");
  sync_->add_flag("--dry-run", dry_run_, "say what would change, change nothing");
  sync_->add_flag("--no-cache", no_cache_, "downloads straight to the folder");

  cache_ = data_->add_subcommand("cache", "the local cache: stats, pin, unpin, evict, clear");
  cache_->require_subcommand(1);
  stats_ = cache_->add_subcommand("stats", "size, bound, entries, hits and refusals");
  stats_->add_option("--format", stats_format_, "prometheus: the text exposition format")
      ->check(CLI::IsMember({"prometheus"}));
  pin_ = cache_->add_subcommand("pin", "keep objects (a key or prefix) cached; fetch them first");
  pin_->add_option("uri", a_, "s3://bucket/key or s3://bucket/prefix/")->required();
  unpin_ = cache_->add_subcommand("unpin", "let pinned objects be evicted again");
  unpin_->add_option("uri", a_, "s3://bucket/key or s3://bucket/prefix/")->required();
  evict_ = cache_->add_subcommand("evict", "drop cached objects (unpinned; --all: pinned too)");
  evict_->add_option("uri", a_, "s3://bucket/prefix (default: everything)");
  evict_->add_flag("--all", all_, "pinned ones too");
  clear_ = cache_->add_subcommand("clear", "empty the cache, pinned objects included");
}

bool DataCommand::parsed() const { return data_ && data_->parsed(); }

int DataCommand::run(const Config& cfg, bool json_out, std::ostream& out, std::ostream& err) {
  // A file-size limit (ulimit -f) becomes a write error with a message, not a killed process.
  ::signal(SIGXFSZ, SIG_IGN);
  const StorageConfig& st = cfg.storage;
  Context c{cfg, json_out, out, err, {}, {}, parallel_.value_or(st.parallel)};
  c.s3.endpoint_url = endpoint_url_.value_or("");
  for (const char* name : {"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"})
    if (c.s3.endpoint_url.empty()) c.s3.endpoint_url = env(name);
  if (c.s3.endpoint_url.empty()) c.s3.endpoint_url = st.endpoint_url;
  c.s3.region = st.region;
  for (const char* name : {"AWS_REGION", "AWS_DEFAULT_REGION"})
    if (c.s3.region.empty()) c.s3.region = env(name);
  if (c.s3.region.empty()) c.s3.region = "us-east-1";
  c.s3.virtual_hosted = st.addressing == "virtual";
  c.s3.profile = st.profile;
  c.s3.multipart_threshold = st.multipart_threshold;
  c.s3.part_size = st.part_size;
  c.s3.split_below = st.split_below;
  c.rules = SensitivityRules(st.sensitive, st.shareable, st.base_dir);
  bool show = progress_ || ::isatty(STDERR_FILENO);

  auto cache_for = [&](std::unique_ptr<Cache>& holder) -> Result<Cache*> {
    if (no_cache_) return static_cast<Cache*>(nullptr);
    auto opened = open_cache(st);
    if (!opened) return opened.error();
    holder = std::move(*opened);
    return holder.get();
  };
  auto t0 = std::chrono::steady_clock::now();

  if (get_->parsed()) {
    auto loc = parse_location(a_);
    if (!loc) return fail(c, loc.error());
    if (!is_remote_uri(a_)) return fail(c, invalid_input(a_ + ": get takes s3:// or file:// URIs"));
    auto store = store_for(c, *loc);
    if (!store) return fail(c, store.error());
    std::unique_ptr<Cache> holder;
    auto cache = cache_for(holder);
    if (!cache) return fail(c, cache.error());
    std::string key = key_of(*loc);
    ProgressLine progress(show && b_ != "-", err);
    TransferOptions to;
    to.parallel = c.parallel;
    to.progress = progress.fn();
    to.on_plan = [&](std::uint64_t bytes, std::uint64_t files) {
      progress.set_total(bytes, files);
    };
    if (key.empty() || key.back() == '/') {  // a prefix: every object under it
      std::string dest = b_.empty() ? "." : b_;
      progress.start();
      auto rep = sync_down(**store, *cache, key, dest, to);
      progress.stop();
      if (!rep) return fail(c, rep.error());
      return print_report(c, *rep, since(t0), false);
    }
    std::string dest = b_.empty() ? fs::path(key).filename().string() : b_;
    if (dest != "-" && fs::is_directory(dest))
      dest = (fs::path(dest) / fs::path(key).filename()).string();
    std::optional<Fetched> fetched;
    if (*cache) {  // through the cache: report whether it was a hit
      FetchOptions fo;
      fo.progress = to.progress;
      fo.parallel = c.parallel;
      // No HEAD here: within revalidate_after a cached copy is served without asking the
      // store; the cache says the size once it knows it.
      fo.on_size = [&](std::uint64_t size) { progress.set_total(size, 1); };
      progress.start();
      auto f = (*cache)->fetch(**store, key, fo);
      progress.stop();
      if (!f) return fail(c, f.error());
      fetched = std::move(*f);
      out.flush();
      if (auto d = deliver(*fetched->file, dest); !d) return fail(c, d.error());
    } else {
      progress.start();
      auto r = get_file(**store, nullptr, key, dest, to);
      progress.stop();
      if (!r) return fail(c, r.error());
    }
    if (dest == "-") return kExitOk;
    double secs = since(t0);
    std::uint64_t size = fetched ? fetched->entry.size : progress.done();
    if (c.json) {
      json::object o;
      o["uri"] = a_;
      o["dest"] = dest;
      o["bytes"] = size;
      o["cache"] = fetched ? std::string(kind_name(fetched->kind)) : "off";
      if (fetched) o["etag"] = fetched->entry.etag;
      o["seconds"] = secs;
      out << pretty_json(o);
    } else {
      out << fmt::format("{} -> {} ({}, {}, {:.2f} s)\n", a_, dest, format_bytes(size),
                         fetched ? kind_name(fetched->kind) : "no cache", secs);
    }
    return kExitOk;
  }

  if (put_->parsed()) {
    auto loc = parse_location(b_);
    if (!loc) return fail(c, loc.error());
    if (!is_remote_uri(b_))
      return fail(c, invalid_input(b_ + ": put takes an s3:// or file:// URI"));
    std::error_code ec;
    if (fs::is_directory(a_, ec))
      return fail(c,
                  invalid_input(a_ + " is a folder: use 'hylab data sync " + a_ + " " + b_ + "'"));
    auto store = store_for(c, *loc);
    if (!store) return fail(c, store.error());
    std::string key = key_of(*loc);
    if (key.empty() || key.back() == '/') key += fs::path(a_).filename().string();
    auto size = file_size(a_);
    if (!size) return fail(c, size.error());
    ProgressLine progress(show, err);
    progress.set_total(*size, 1);
    TransferOptions to;
    to.parallel = c.parallel;
    to.progress = progress.fn();
    progress.start();
    auto r = put_file(**store, c.rules, a_, key, to);
    progress.stop();
    if (!r) {
      if (storage::refused_uploads() > 0) {  // counted where the metrics can see it
        if (auto opened = open_cache(st)) (*opened)->count_refused(storage::refused_uploads());
      }
      return fail(c, r.error());
    }
    double secs = since(t0);
    if (c.json) {
      json::object o;
      o["src"] = a_;
      o["uri"] = (*store)->describe() + "/" + key;
      o["bytes"] = *size;
      o["etag"] = r->etag;
      o["sha256"] = r->sha256;
      o["seconds"] = secs;
      out << pretty_json(o);
    } else {
      out << fmt::format("{} -> {}/{} ({}, {:.2f} s)\n", a_, (*store)->describe(), key,
                         format_bytes(*size), secs);
    }
    return kExitOk;
  }

  if (ls_->parsed() || rm_->parsed()) {
    auto loc = parse_location(a_);
    if (!loc) return fail(c, loc.error());
    auto store = store_for(c, *loc);
    if (!store) return fail(c, store.error());
    std::string key = key_of(*loc);
    if (rm_->parsed() && !recursive_) {
      auto r = (*store)->remove(key);
      if (!r) return fail(c, r.error());
      if (c.json) {
        json::object o;
        o["deleted"] = json::array{json::value(key)};
        out << pretty_json(o);
      } else {
        out << "deleted " << a_ << "\n";
      }
      return kExitOk;
    }
    auto list = (*store)->list(key);
    if (!list) return fail(c, list.error());
    if (rm_->parsed()) {
      json::array deleted;
      for (const auto& o : *list) {
        auto r = (*store)->remove(o.key);
        if (!r) return fail(c, r.error());
        deleted.push_back(json::value(o.key));
        if (!c.json) out << "deleted " << (*store)->describe() << "/" << o.key << "\n";
      }
      if (c.json) out << pretty_json(json::object{{"deleted", deleted}});
      return kExitOk;
    }
    if (c.json) {
      json::array arr;
      for (const auto& o : *list) {
        arr.push_back(
            json::object{{"key", o.key}, {"size", o.size}, {"etag", o.etag}, {"mtime", o.mtime}});
      }
      out << pretty_json(arr);
    } else {
      std::vector<std::vector<std::string>> rows{{"KEY", "SIZE", "MODIFIED", "ETAG"}};
      std::uint64_t total = 0;
      for (const auto& o : *list) {
        char when[32] = "";
        std::time_t t = o.mtime;
        std::tm tm{};
        gmtime_r(&t, &tm);
        std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
        rows.push_back({o.key, format_bytes(o.size), when, o.etag});
        total += o.size;
      }
      out << columns(rows);
      out << fmt::format("{} objects, {}\n", list->size(), format_bytes(total));
    }
    return kExitOk;
  }

  if (sync_->parsed()) {
    bool up = is_remote_uri(b_) && !is_remote_uri(a_);
    bool down = is_remote_uri(a_) && !is_remote_uri(b_);
    if (!up && !down)
      return fail(c, invalid_input("sync needs one local folder and one s3:// or file:// prefix"));
    auto loc = parse_location(up ? b_ : a_);
    if (!loc) return fail(c, loc.error());
    auto store = store_for(c, *loc);
    if (!store) return fail(c, store.error());
    std::string prefix = key_of(*loc);
    ProgressLine progress(show && !dry_run_, err);
    TransferOptions to;
    to.parallel = c.parallel;
    to.dry_run = dry_run_;
    to.delete_extra = delete_;
    to.progress = progress.fn();
    to.on_plan = [&](std::uint64_t bytes, std::uint64_t files) {
      progress.set_total(bytes, files);
    };
    progress.start();  // (a sync down starts on the listing's first page)
    Result<TransferReport> rep = Error{};
    if (up) {
      rep = sync_up(**store, c.rules, a_, prefix, to);
    } else {
      std::unique_ptr<Cache> holder;
      auto cache = cache_for(holder);
      if (!cache) return fail(c, cache.error());
      rep = sync_down(**store, *cache, prefix, b_, to);
    }
    progress.stop();
    if (!rep) return fail(c, rep.error());
    if (rep->refused > 0) {
      if (auto opened = open_cache(st)) (*opened)->count_refused(rep->refused);
    }
    return print_report(c, *rep, since(t0), dry_run_);
  }

  // hylab data cache ...
  auto opened = open_cache(st);
  if (!opened) return fail(c, opened.error());
  Cache& cache = **opened;
  if (stats_->parsed()) {
    CacheStats s = cache.stats();
    if (stats_format_ == "prometheus") {
      out << telemetry::storage_metrics_text({s.bytes, s.max_bytes, s.entries, s.hits,
                                              s.revalidated, s.misses, s.evictions,
                                              s.refused_uploads});
      return kExitOk;
    }
    if (c.json) {
      out << pretty_json(json::object{{"dir", cache.options().dir},
                                      {"bytes", s.bytes},
                                      {"max_bytes", s.max_bytes},
                                      {"entries", s.entries},
                                      {"pinned_bytes", s.pinned_bytes},
                                      {"hits", s.hits},
                                      {"revalidated", s.revalidated},
                                      {"misses", s.misses},
                                      {"evictions", s.evictions},
                                      {"repaired", s.repaired},
                                      {"refused_uploads", s.refused_uploads}});
    } else {
      out << fmt::format(
          "cache {}\n  {} of {} ({:.1f}%), {} objects, {} pinned\n  hits {}, revalidated {}, "
          "misses {}, evictions {}, repaired at open {}\n  sensitive uploads refused {}\n",
          cache.options().dir, format_bytes(s.bytes), format_bytes(s.max_bytes),
          s.max_bytes ? 100.0 * static_cast<double>(s.bytes) / static_cast<double>(s.max_bytes) : 0,
          s.entries, format_bytes(s.pinned_bytes), s.hits, s.revalidated, s.misses, s.evictions,
          s.repaired, s.refused_uploads);
    }
    return kExitOk;
  }
  if (clear_->parsed() || evict_->parsed()) {
    std::string store_id, prefix;
    if (evict_->parsed() && !a_.empty()) {
      auto loc = parse_location(a_);
      if (!loc) return fail(c, loc.error());
      auto store = store_for(c, *loc);
      if (!store) return fail(c, store.error());
      store_id = (*store)->cache_id();
      prefix = key_of(*loc);
    }
    auto freed = cache.evict(store_id, prefix, clear_->parsed() || all_);
    if (!freed) return fail(c, freed.error());
    if (c.json) {
      out << pretty_json(json::object{{"freed_bytes", *freed}});
    } else {
      out << "freed " << format_bytes(*freed) << "\n";
    }
    return kExitOk;
  }
  if (pin_->parsed() || unpin_->parsed()) {
    auto loc = parse_location(a_);
    if (!loc) return fail(c, loc.error());
    auto store = store_for(c, *loc);
    if (!store) return fail(c, store.error());
    std::string key = key_of(*loc);
    std::size_t n = 0;
    if (pin_->parsed()) {  // fetch what is not cached yet, pinned
      std::vector<ObjectInfo> objects;
      if (key.empty() || key.back() == '/') {
        auto list = (*store)->list(key);
        if (!list) return fail(c, list.error());
        objects = std::move(*list);
      } else {
        auto h = (*store)->head(key);
        if (!h) return fail(c, h.error());
        objects.push_back(*h);
      }
      for (const auto& o : objects) {
        FetchOptions fo;
        fo.known = &o;
        fo.pin = true;
        fo.parallel = c.parallel;
        auto f = cache.fetch(**store, o.key, fo);
        if (!f) return fail(c, f.error());
        ++n;
      }
    } else {
      auto r = cache.pin((*store)->cache_id(), key, false);
      if (!r) return fail(c, r.error());
      n = *r;
    }
    if (c.json) {
      out << pretty_json(json::object{{pin_->parsed() ? "pinned" : "unpinned", n}});
    } else {
      out << (pin_->parsed() ? "pinned " : "unpinned ") << n << " object" << (n == 1 ? "" : "s")
          << "\n";
    }
    return kExitOk;
  }
  err << "error: no data command given. Run 'hylab data --help'.\n";
  return kExitBadInput;
}

}  // namespace hylab::cli
