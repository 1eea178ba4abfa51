// The s3 backend: any S3-compatible endpoint (AWS, R2, MinIO, Ceph, s3rver) over libcurl,
// each request signed here with SigV4 (libcurl 7.88's own signing gets S3 wrong). Large
// objects move in parallel: ranged GETs written in place, multipart uploads with parts at
// once. 5xx, throttling and connection errors are retried with jittered exponential
// back-off. Messages name the bucket, key and S3's error code, never a credential.
// Thread-safe: each request takes an easy handle from a pool (keep-alive per handle).
#include <curl/curl.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <iterator>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "storage/credentials.h"
#include "storage/file_util.h"
#include "storage/object_store.h"
#include "storage/sigv4.h"
#include "storage/xml.h"

namespace hylab::storage {
namespace {

constexpr std::size_t kMaxXmlBytes = 32u << 20;  // a listing page or an error body

// The first stream of a large download: writes from offset 0 up to `end`, which a split
// moves down to where ranges take over (then the stream stops there).
struct Segment {
  std::mutex mu;
  std::uint64_t pos = 0;  // bytes written
  std::uint64_t end = 0;
  std::chrono::steady_clock::time_point first_byte;
};

constexpr std::uint64_t kSplitAlways = ~std::uint64_t{0};

struct Response {
  long status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;                            // when not written to a file
  std::string transport_error;                 // curl's, when no HTTP answer came
};

struct Request {
  std::string method = "GET";
  std::string key;   // empty: the bucket itself
  Pairs query;       // decoded
  Pairs headers;     // besides host and the signature's
  std::string body;  // small bodies (XML)
  // Upload a range of a file, or download into a file at an offset.
  std::string upload_file;
  std::uint64_t upload_offset = 0, upload_len = 0;
  int download_fd = -1;
  std::uint64_t download_offset = 0;
  // Also written with every downloaded byte, at its offset in the object (the object's
  // first byte is at `object_at` in download_fd: a pack's offset).
  int tee_fd = -1;
  std::uint64_t object_at = 0;
  ProgressFn progress;
  Hasher* hasher = nullptr;  // fed with downloaded bytes in order
  bool large = false;        // a download of megabytes: bigger receive buffer
  bool cut_on_retry = true;  // a retry cuts the file back to download_offset first
  // The answer's headers choose the hasher's check (x-amz-meta-sha256 or the MD5 ETag);
  // off when the caller chose it from what it knew (its check will expect that one).
  bool check_from_headers = true;
  // A large get's first stream: written from 0 up to segment->end.
  Segment* segment = nullptr;
};

std::string trim_quotes(std::string s) {
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  return s;
}

std::int64_t parse_http_date(const std::string& s) {
  return s.empty() ? 0 : static_cast<std::int64_t>(curl_getdate(s.c_str(), nullptr));
}

std::int64_t parse_iso_date(const std::string& s) {
  struct tm tm {};
  if (!strptime(s.c_str(), "%Y-%m-%dT%H:%M:%S", &tm)) return 0;
  return static_cast<std::int64_t>(timegm(&tm));
}

class HandlePool {
 public:
  ~HandlePool() {
    for (CURL* h : free_) curl_easy_cleanup(h);
  }
  CURL* take() {
    std::lock_guard lock(mu_);
    if (free_.empty()) return curl_easy_init();
    CURL* h = free_.back();
    free_.pop_back();
    return h;
  }
  void give(CURL* h) {
    std::lock_guard lock(mu_);
    free_.push_back(h);
  }

 private:
  std::mutex mu_;
  std::vector<CURL*> free_;
};

struct Transfer {
  Response* res;
  const Request* req;
  int upload_fd = -1;
  std::uint64_t up_pos = 0, down_pos = 0;
  std::string write_error;
  bool stopped = false;  // a segment's end reached: the rest is not ours to write
};

bool write_all(int fd, const char* data, std::size_t len, std::uint64_t offset,
               std::string& error) {
  for (std::size_t w = 0; w < len;) {
    ssize_t k = ::pwrite(fd, data + w, len - w, static_cast<off_t>(offset + w));
    if (k < 0) {
      error = errno == ENOSPC || errno == EDQUOT
                  ? "the disk is full"
                  : fmt::format("cannot write the download: {}", errno_text(errno));
      return false;
    }
    w += static_cast<std::size_t>(k);
  }
  return true;
}

bool write_at(Transfer* t, const char* data, std::size_t len, std::uint64_t offset) {
  const Request& r = *t->req;
  return write_all(r.download_fd, data, len, offset, t->write_error) &&
         (r.tee_fd < 0 || write_all(r.tee_fd, data, len, offset - r.object_at, t->write_error));
}

std::size_t on_header(char* data, std::size_t size, std::size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) {
    t->res->headers.clear();  // a new response (after 100 Continue or a redirect)
    auto sp = line.find(' ');
    t->res->status =
        sp == std::string_view::npos ? 0 : std::strtol(line.data() + sp + 1, nullptr, 10);
    return size * n;
  }
  auto colon = line.find(':');
  if (colon == std::string_view::npos) {
    if (t->req->hasher && t->req->check_from_headers && t->res->status == 200 &&
        (line == "\r\n" || line == "\n")) {
      // The headers are in, the body is next: hash for the check this object allows.
      t->req->hasher->choose(
          check_for(t->res->headers["x-amz-meta-sha256"], trim_quotes(t->res->headers["etag"])));
    }
    return size * n;
  }
  std::string name(line.substr(0, colon));
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  std::string_view v = line.substr(colon + 1);
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == '\r' || v.back() == '\n' || v.back() == ' '))
    v.remove_suffix(1);
  t->res->headers[name] = std::string(v);
  return size * n;
}

std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::size_t len = size * n;
  bool to_file = t->req->download_fd >= 0 && t->res->status / 100 == 2 && t->res->status != 204;
  if (!to_file) {
    if (t->res->body.size() + len > kMaxXmlBytes) {
      t->write_error = fmt::format("the answer is over the {} MiB limit for a non-object body",
                                   kMaxXmlBytes >> 20);
      return 0;
    }
    t->res->body.append(data, len);
    return len;
  }
  // A segment (a large get's first stream) writes up to its end, under its lock: a split
  // moves the end while the stream runs.
  Segment* seg = t->req->segment;
  std::unique_lock<std::mutex> seg_lock;
  std::size_t take = len;
  std::uint64_t at = t->req->download_offset + t->down_pos;
  if (seg) {
    seg_lock = std::unique_lock(seg->mu);
    if (seg->pos == 0) seg->first_byte = std::chrono::steady_clock::now();
    take = static_cast<std::size_t>(std::min<std::uint64_t>(len, seg->end - seg->pos));
    at = seg->pos;
  }
  if (!write_at(t, data, take, at)) return 0;
  (seg ? seg->pos : t->down_pos) += take;
  if (t->req->hasher) t->req->hasher->update(data, take);
  if (t->req->progress) t->req->progress(take);
  if (take == len) return len;
  t->stopped = true;  // the rest is not this stream's to write: curl ends the transfer
  return 0;
}

std::size_t on_read(char* buf, std::size_t size, std::size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::uint64_t left = t->req->upload_len - t->up_pos;
  std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(left, size * n));
  if (want == 0) return 0;
  ssize_t k =
      ::pread(t->upload_fd, buf, want, static_cast<off_t>(t->req->upload_offset + t->up_pos));
  if (k <= 0) return CURL_READFUNC_ABORT;
  t->up_pos += static_cast<std::uint64_t>(k);
  if (t->req->progress) t->req->progress(static_cast<std::uint64_t>(k));
  return static_cast<std::size_t>(k);
}

class S3Store final : public ObjectStore {
 public:
  S3Store(std::string bucket, S3Options opt, Credentials creds)
      : bucket_(std::move(bucket)), opt_(std::move(opt)), creds_(std::move(creds)) {
    std::string url = opt_.endpoint_url.empty()
                          ? fmt::format("https://s3.{}.amazonaws.com", opt_.region)
                          : opt_.endpoint_url;
    while (!url.empty() && url.back() == '/') url.pop_back();
    auto scheme_end = url.find("://");
    scheme_ = scheme_end == std::string::npos ? "https" : url.substr(0, scheme_end);
    host_ = scheme_end == std::string::npos ? url : url.substr(scheme_end + 3);
    auto slash = host_.find('/');
    if (slash != std::string::npos) {
      base_path_ = host_.substr(slash);
      host_ = host_.substr(0, slash);
    }
    if (opt_.virtual_hosted) host_ = bucket_ + "." + host_;
    if (opt_.ca_file.empty()) {
      if (const char* ca = std::getenv("AWS_CA_BUNDLE"); ca && *ca) opt_.ca_file = ca;
    }
  }

  std::string describe() const override { return "s3://" + bucket_; }

  Result<ObjectInfo> head(const std::string& key) override {
    Request req;
    req.method = "HEAD";
    req.key = key;
    auto res = perform(req);
    if (!res) return res.error();
    if (res->status == 404)
      return Error{Errc::kNotFound, fmt::format("s3://{}/{}: no such object", bucket_, key)};
    if (res->status != 200) return status_error(req, *res);
    return info_from_headers(key, *res);
  }

  std::string cache_id() const override {
    return fmt::format("{}://{}{}/{}", scheme_, host_, base_path_, bucket_);
  }

  Result<ObjectInfo> revalidate(const std::string& key, const std::string& etag) override {
    Request req;
    req.method = "HEAD";
    req.key = key;
    req.headers.emplace_back("if-none-match", "\"" + etag + "\"");
    auto res = perform(req);
    if (!res) return res.error();
    if (res->status == 304) {
      ObjectInfo i = info_from_headers(key, *res);
      i.etag = etag;
      i.not_modified = true;
      return i;
    }
    if (res->status == 404)
      return Error{Errc::kNotFound, fmt::format("s3://{}/{}: no such object", bucket_, key)};
    if (res->status != 200) return status_error(req, *res);
    return info_from_headers(key, *res);
  }

  Result<ObjectInfo> get(const std::string& key, const std::string& dest,
                         const GetOptions& opt) override {
    int fd = opt.dest_fd >= 0
                 ? opt.dest_fd
                 : ::open(dest.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return Error{Errc::kIo, fmt::format("{}: {}", dest, errno_text(errno))};
    struct Close {
      int fd;
      ~Close() {
        if (fd >= 0) ::close(fd);
      }
    } close_fd{opt.dest_fd >= 0 ? -1 : fd};
    bool whole = opt.offset == 0 && !opt.length;
    std::optional<ObjectInfo> known;
    if (opt.known) known = *opt.known;
    // (Into a shared file: one stream, appended; parallel parts need a file of their own.)
    if (whole && opt.parallel > 1 && opt.if_none_match.empty() && opt.dest_fd < 0) {
      if (!known) {
        auto info = head(key);
        if (!info) return info;
        known = *info;
        // Its headers tell the check (as a GET's do, see on_header).
        if (opt.hasher) opt.hasher->choose(check_for(known->sha256, known->etag));
      }
      if (known->size >= opt_.multipart_threshold) return parallel_get(key, fd, *known, opt);
    }
    Request req;
    req.key = key;
    req.download_fd = fd;
    req.download_offset = req.object_at = opt.dest_fd >= 0 ? opt.dest_offset : 0;
    req.tee_fd = opt.tee_fd;
    req.progress = opt.progress;
    req.large = known && known->size >= (4u << 20);
    if (whole) req.hasher = opt.hasher;
    if (!whole) {
      std::string range = fmt::format("bytes={}-", opt.offset);
      if (opt.length) {
        if (*opt.length == 0) return head(key);
        range += std::to_string(opt.offset + *opt.length - 1);
      }
      req.headers.emplace_back("range", range);
    }
    if (!opt.if_none_match.empty())
      req.headers.emplace_back("if-none-match", "\"" + opt.if_none_match + "\"");
    auto res = perform(req);
    if (!res) return res.error();
    if (res->status == 304) {
      ObjectInfo i = info_from_headers(key, *res);
      if (i.etag.empty()) i.etag = opt.if_none_match;
      i.not_modified = true;
      return i;
    }
    if (res->status == 404)
      return Error{Errc::kNotFound, fmt::format("s3://{}/{}: no such object", bucket_, key)};
    if (res->status != 200 && res->status != 206) return status_error(req, *res);
    ObjectInfo i = info_from_headers(key, *res);
    if (res->status == 206) {
      // Content-Range: bytes a-b/total
      auto cr = res->headers["content-range"];
      auto slash = cr.rfind('/');
      if (slash != std::string::npos && cr.substr(slash + 1) != "*")
        i.size = std::stoull(cr.substr(slash + 1));
    }
    if (req.hasher && res->status == 200) req.hasher->finish();
    return i;
  }

  Result<ObjectInfo> put(const std::string& key, const std::string& src,
                         const PutOptions& opt) override {
    auto size = file_size(src);
    if (!size) return size.error();
    if (*size >= opt_.multipart_threshold) return multipart_put(key, src, *size, opt);
    Request req;
    req.method = "PUT";
    req.key = key;
    req.upload_file = src;
    req.upload_len = *size;
    req.progress = opt.progress;
    if (!opt.sha256.empty()) req.headers.emplace_back("x-amz-meta-sha256", opt.sha256);
    auto res = perform(req);
    if (!res) return res.error();
    if (res->status != 200) return status_error(req, *res);
    ObjectInfo i;
    i.key = key;
    i.size = *size;
    i.etag = trim_quotes(res->headers["etag"]);
    i.sha256 = opt.sha256;
    i.mtime = std::chrono::duration_cast<std::chrono::seconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count();
    return i;
  }

  Result<std::vector<ObjectInfo>> list(const std::string& prefix) override {
    std::vector<ObjectInfo> out;
    auto r = list_pages(prefix, [&](std::vector<ObjectInfo>&& page, bool) {
      out.insert(out.end(), std::make_move_iterator(page.begin()),
                 std::make_move_iterator(page.end()));
    });
    if (!r) return r.error();
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.key < b.key; });
    return out;
  }

  Result<bool> list_pages(const std::string& prefix, const PageFn& on_page) override {
    std::string token;
    for (;;) {
      Request req;
      req.query = {{"list-type", "2"}, {"prefix", prefix}};
      if (!token.empty()) req.query.emplace_back("continuation-token", token);
      auto res = perform(req);
      if (!res) return res.error();
      if (res->status != 200) return status_error(req, *res);
      std::vector<ObjectInfo> page;
      for (std::string_view block : xml_blocks(res->body, "Contents")) {
        ObjectInfo i;
        i.key = xml_text(block, "Key");
        i.size = std::strtoull(xml_text(block, "Size").c_str(), nullptr, 10);
        i.etag = trim_quotes(xml_text(block, "ETag"));
        i.mtime = parse_iso_date(xml_text(block, "LastModified"));
        page.push_back(std::move(i));
      }
      bool more = xml_text(res->body, "IsTruncated") == "true";
      std::string next = more ? xml_text(res->body, "NextContinuationToken") : "";
      if (more && (next.empty() || next == token))
        return Error{Errc::kIo,
                     fmt::format("s3://{}/{}: a truncated listing without a continuation token",
                                 bucket_, prefix)};
      on_page(std::move(page), !more);
      if (!more) return true;
      token = next;
    }
  }

  Result<bool> remove(const std::string& key) override {
    Request req;
    req.method = "DELETE";
    req.key = key;
    auto res = perform(req);
    if (!res) return res.error();
    if (res->status != 204 && res->status != 200 && res->status != 404)
      return status_error(req, *res);
    return true;
  }

 private:
  ObjectInfo info_from_headers(const std::string& key, Response& res) const {
    ObjectInfo i;
    i.key = key;
    i.size = std::strtoull(res.headers["content-length"].c_str(), nullptr, 10);
    i.etag = trim_quotes(res.headers["etag"]);
    i.mtime = parse_http_date(res.headers["last-modified"]);
    i.sha256 = res.headers["x-amz-meta-sha256"];
    return i;
  }

  Error status_error(const Request& req, const Response& res) const {
    std::string code = xml_text(res.body, "Code");
    std::string message = xml_text(res.body, "Message");
    std::string what = fmt::format("s3://{}/{}", bucket_, req.key);
    std::string text = fmt::format("{}: {} {} answered {}", what, req.method, host_, res.status);
    if (!code.empty()) text += " " + code;
    if (!message.empty()) text += ": " + message;
    Errc errc = res.status == 404                        ? Errc::kNotFound
                : res.status == 403 || res.status == 400 ? Errc::kInvalidInput
                                                         : Errc::kIo;
    return Error{errc, text};
  }

  static bool retryable(const Response& res) {
    return !res.transport_error.empty() || res.status >= 500 || res.status == 429;
  }

  // Sends a request, retrying what may be retried; a download starts over at its offset.
  Result<Response> perform(const Request& req) {
    Response res;
    for (int attempt = 1;; ++attempt) {
      res = Response{};
      auto r = perform_once(req, res);
      if (!r) return r.error();
      if (!retryable(res) || attempt >= opt_.max_attempts) break;
      if (req.download_fd >= 0 && req.cut_on_retry &&
          (::ftruncate(req.download_fd, static_cast<off_t>(req.download_offset)) != 0 ||
           (req.tee_fd >= 0 &&
            ::ftruncate(req.tee_fd, static_cast<off_t>(req.download_offset - req.object_at)) != 0)))
        break;
      if (req.segment) {
        std::lock_guard lock(req.segment->mu);
        req.segment->pos = 0;
      }
      if (req.hasher) req.hasher->reset();  // the retry starts over
      auto cap = std::min(20000.0, 100.0 * (1 << std::min(attempt, 8)));
      thread_local std::mt19937 rng(std::random_device{}());  // only when retrying
      std::uniform_real_distribution<double> jitter(cap / 2, cap);
      std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int>(jitter(rng))));
    }
    if (!res.transport_error.empty()) {
      return Error{Errc::kIo, fmt::format("s3://{}/{}: {} {}: {}", bucket_, req.key, req.method,
                                          host_, res.transport_error)};
    }
    return res;
  }

  Result<bool> perform_once(const Request& req, Response& res) {
    // Path style: /BUCKET/KEY (the bucket itself: /BUCKET); virtual-hosted: /KEY (or /).
    std::string path = base_path_;
    if (!opt_.virtual_hosted) {
      path += "/" + uri_encode(bucket_, true);
      if (!req.key.empty()) path += "/" + uri_encode(req.key, false);
    } else {
      path += "/" + uri_encode(req.key, false);
    }
    SignRequest sr;
    sr.method = req.method;
    sr.path = path;
    sr.query = req.query;
    sr.headers.emplace_back("host", host_);
    for (const auto& h : req.headers) sr.headers.push_back(h);
    sr.payload_sha256 =
        req.upload_file.empty() ? sha256_hex(req.body) : std::string(kUnsignedPayload);
    SignOptions so;
    so.region = opt_.region;
    Signed s = sign_headers(sr, creds_, so);

    std::string url = scheme_ + "://" + host_ + path;
    std::string q = canonical_query(req.query);
    if (!q.empty()) url += "?" + q;

    curl_slist* hl = nullptr;
    for (const auto& h : sr.headers)
      hl = curl_slist_append(hl, (h.first + ": " + h.second).c_str());
    for (const auto& h : s.add) hl = curl_slist_append(hl, (h.first + ": " + h.second).c_str());
    hl = curl_slist_append(hl, "Expect:");
    if (!req.body.empty()) hl = curl_slist_append(hl, "Content-Type: application/xml");
    struct Slist {
      curl_slist* l;
      ~Slist() { curl_slist_free_all(l); }
    } free_list{hl};

    Transfer t{&res, &req, -1, 0, 0, {}, false};
    struct CloseFd {
      int& fd;
      ~CloseFd() {
        if (fd >= 0) ::close(fd);
      }
    } close_up{t.upload_fd};
    if (!req.upload_file.empty()) {
      t.upload_fd = ::open(req.upload_file.c_str(), O_RDONLY | O_CLOEXEC);
      if (t.upload_fd < 0)
        return Error{Errc::kIo, fmt::format("{}: {}", req.upload_file, errno_text(errno))};
    }
    CURL* h = pool_.take();
    if (h == nullptr) return Error{Errc::kInternal, "libcurl: cannot make a handle"};
    struct Give {
      HandlePool& p;
      CURL* h;
      ~Give() {
        curl_easy_reset(h);
        p.give(h);
      }
    } give{pool_, h};
    char errbuf[CURL_ERROR_SIZE] = {0};
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    // A transfer that moves no byte for timeout_seconds is dead; a slow one is not.
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, static_cast<long>(opt_.timeout_seconds));
    // Downloads read in larger pieces than curl's 16 KiB: for 2,000 objects of 1-64 KiB,
    // recv(2) 5,208 -> 2,028 and poll(2) 13,280 -> 10,088 (the handle's reset gives the
    // buffer back after each request: small objects get 128 KiB, not 512).
    if (req.large)
      curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 512L * 1024);
    else if (req.download_fd >= 0)
      curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 128L * 1024);
    if (!opt_.ca_file.empty()) curl_easy_setopt(h, CURLOPT_CAINFO, opt_.ca_file.c_str());
    if (req.method == "HEAD") {
      curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (req.method == "PUT" && !req.upload_file.empty()) {
      curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
      curl_easy_setopt(h, CURLOPT_READDATA, &t);
      curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(req.upload_len));
    } else if (req.method == "POST" || req.method == "PUT") {
      curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req.method.c_str());
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, req.body.c_str());
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
    } else if (req.method != "GET") {
      curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req.method.c_str());
    }
    CURLcode rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &res.status);
    if (!t.write_error.empty()) {
      return Error{Errc::kIo, fmt::format("s3://{}/{}: {}", bucket_, req.key, t.write_error)};
    }
    if (rc != CURLE_OK && !t.stopped) {
      res.transport_error = errbuf[0] ? errbuf : curl_easy_strerror(rc);
      res.status = 0;
    }
    return true;
  }

  // A large object: one stream first, hashed as it arrives. While that stream brings at
  // least split_below bytes a second (a server on the same machine or the LAN) it stays
  // alone: more streams only add requests and writes out of order (on s3rver, one stream
  // took 1.6-1.75 s for 1 GiB, 16 ranges of 16 MiB 2.0-2.5 s). Slower (a cloud endpoint,
  // where one connection is the limit), the rest is split into part_size ranges fetched
  // `parallel` at once, the first stream stopping where the ranges begin; each range is
  // written in place, If-Match keeps them to one version of the object, and the hash
  // follows them in order, each read back (from the page cache) once every byte before it
  // is in.
  Result<ObjectInfo> parallel_get(const std::string& key, int fd, const ObjectInfo& info,
                                  const GetOptions& opt) {
    const std::uint64_t part = opt_.part_size;
    std::mutex mu;  // guards what follows, with part_cv
    std::condition_variable part_cv;
    bool first_done = false;
    std::optional<Error> failed;
    std::uint64_t split_at = info.size, parts = 0, next = 0;
    std::vector<char> part_done;
    auto fail = [&](Error e) {
      std::lock_guard lock(mu);
      if (!failed) failed = std::move(e);
      part_cv.notify_all();
    };
    auto request = [&](std::uint64_t from, std::uint64_t to) {  // [from, to); 0, 0: all
      Request req;
      req.key = key;
      req.download_fd = fd;
      req.download_offset = from;
      req.tee_fd = opt.tee_fd;
      req.cut_on_retry = false;  // other ranges lie past this one
      req.progress = opt.progress;
      req.large = true;
      if (to > 0) req.headers.emplace_back("range", fmt::format("bytes={}-{}", from, to - 1));
      if (!info.etag.empty()) req.headers.emplace_back("if-match", "\"" + info.etag + "\"");
      return req;
    };
    auto run_parts = [&] {
      for (;;) {
        std::uint64_t n;
        {
          std::lock_guard lock(mu);
          if (failed || next >= parts) return;
          n = next++;
        }
        std::uint64_t from = split_at + n * part;
        Request req = request(from, std::min(info.size, from + part));
        auto res = perform(req);
        if (!res) return fail(res.error());
        if (res->status != 206 && res->status != 200) return fail(status_error(req, *res));
        {
          std::lock_guard lock(mu);
          part_done[n] = 1;
        }
        part_cv.notify_all();
      }
    };
    Segment seg;
    seg.end = info.size;
    std::thread first([&] {
      Request req = request(0, 0);  // the whole object, stopped at seg.end
      req.segment = &seg;
      // Hashed as it arrives, on this thread (a thread of its own reading back was slower:
      // 2.7-2.9 s against 2.0-2.1 s for 1 GiB on tmpfs), with the check chosen from `info`.
      req.hasher = opt.hasher;
      req.check_from_headers = false;
      auto res = perform(req);
      if (!res) return fail(res.error());
      if (res->status != 200 && res->status != 206) return fail(status_error(req, *res));
      {
        std::lock_guard lock(mu);
        first_done = true;
      }
      part_cv.notify_all();
      run_parts();  // then a worker like the others
    });
    std::vector<std::thread> helpers;
    std::thread hash_thread;
    bool hashed_all = false;
    // The split: the first stream stops a part past where it is, ranges take the rest.
    auto split = [&] {
      {
        std::scoped_lock lock(mu, seg.mu);
        if (first_done || failed) return;
        std::uint64_t at = seg.pos + part;
        if (at + part > info.size) return;  // less than a part would be left to split off
        seg.end = split_at = at;
        parts = (info.size - at + part - 1) / part;
        part_done.assign(parts, 0);
      }
      int n = static_cast<int>(std::min<std::uint64_t>(
          parts, static_cast<std::uint64_t>(std::max(1, opt.parallel - 1))));
      for (int i = 0; i < n; ++i) helpers.emplace_back(run_parts);
      if (!opt.hasher) return;
      hash_thread = std::thread([&] {
        std::vector<char> buf(1 << 20);
        std::unique_lock lock(mu);
        part_cv.wait(lock, [&] { return first_done || failed; });
        for (std::uint64_t k = 0; k < parts && !failed; ++k) {
          part_cv.wait(lock, [&] { return part_done[k] || failed; });
          if (failed) return;
          lock.unlock();
          std::uint64_t off = split_at + k * part, end = std::min(info.size, off + part);
          while (off < end) {
            ssize_t n = ::pread(fd, buf.data(), std::min<std::uint64_t>(buf.size(), end - off),
                                static_cast<off_t>(off));
            if (n <= 0) return;
            opt.hasher->update(buf.data(), static_cast<std::size_t>(n));
            off += static_cast<std::uint64_t>(n);
          }
          lock.lock();
        }
        hashed_all = !failed;
      });
    };
    if (opt.parallel > 1 && opt_.split_below == kSplitAlways) {
      split();
    } else if (opt.parallel > 1 && opt_.split_below > 0) {
      // Judged on the stream's rate since its first byte, every probe interval until it ends.
      auto probe = std::chrono::duration<double>(opt_.split_probe_seconds);
      std::unique_lock lock(mu);
      for (;;) {
        if (part_cv.wait_for(lock, probe, [&] { return first_done || failed.has_value(); })) break;
        std::uint64_t pos;
        std::chrono::steady_clock::time_point began;
        {
          std::lock_guard seg_lock(seg.mu);
          pos = seg.pos;
          began = seg.first_byte;
        }
        double seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
        if (pos == 0 || seconds < opt_.split_probe_seconds) continue;
        if (static_cast<double>(pos) / seconds < static_cast<double>(opt_.split_below)) {
          lock.unlock();
          split();
          break;
        }
      }
    }
    first.join();
    for (auto& t : helpers) t.join();
    if (hash_thread.joinable()) hash_thread.join();
    if (failed) return *failed;
    if (opt.hasher && (parts == 0 || hashed_all)) opt.hasher->finish();
    return info;
  }

  Result<ObjectInfo> multipart_put(const std::string& key, const std::string& src,
                                   std::uint64_t size, const PutOptions& opt) {
    Request create;
    create.method = "POST";
    create.key = key;
    create.query = {{"uploads", ""}};
    if (!opt.sha256.empty()) create.headers.emplace_back("x-amz-meta-sha256", opt.sha256);
    auto cres = perform(create);
    if (!cres) return cres.error();
    if (cres->status != 200) return status_error(create, *cres);
    std::string upload_id = xml_text(cres->body, "UploadId");
    if (upload_id.empty())
      return Error{Errc::kIo,
                   fmt::format("s3://{}/{}: no UploadId in the answer to CreateMultipartUpload",
                               bucket_, key)};
    // S3 allows 10,000 parts: grow the part size for very large files.
    std::uint64_t part = std::max(opt_.part_size, (size + 9999) / 10000);
    std::uint64_t parts = (size + part - 1) / part;
    std::vector<std::string> etags(parts);
    std::atomic<std::uint64_t> next{0};
    std::mutex mu;
    std::optional<Error> failed;
    auto worker = [&] {
      for (;;) {
        std::uint64_t n = next.fetch_add(1);
        if (n >= parts) return;
        {
          std::lock_guard lock(mu);
          if (failed) return;
        }
        Request req;
        req.method = "PUT";
        req.key = key;
        req.query = {{"partNumber", std::to_string(n + 1)}, {"uploadId", upload_id}};
        req.upload_file = src;
        req.upload_offset = n * part;
        req.upload_len = std::min(size, (n + 1) * part) - n * part;
        req.progress = opt.progress;
        auto res = perform(req);
        std::optional<Error> err;
        if (!res) {
          err = res.error();
        } else if (res->status != 200) {
          err = status_error(req, *res);
        } else {
          etags[n] = res->headers["etag"];
        }
        if (err) {
          std::lock_guard lock(mu);
          if (!failed) failed = std::move(err);
          return;
        }
      }
    };
    std::vector<std::thread> threads;
    int n_threads = static_cast<int>(
        std::min<std::uint64_t>(parts, static_cast<std::uint64_t>(std::max(1, opt.parallel))));
    for (int i = 0; i < n_threads; ++i) threads.emplace_back(worker);
    for (auto& t : threads) t.join();
    if (failed) {
      Request abort;
      abort.method = "DELETE";
      abort.key = key;
      abort.query = {{"uploadId", upload_id}};
      (void)perform(abort);
      return *failed;
    }
    Request done;
    done.method = "POST";
    done.key = key;
    done.query = {{"uploadId", upload_id}};
    done.body = "<CompleteMultipartUpload>";
    for (std::uint64_t n = 0; n < parts; ++n) {
      done.body += fmt::format("<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>", n + 1,
                               xml_escape(etags[n]));
    }
    done.body += "</CompleteMultipartUpload>";
    auto dres = perform(done);
    if (!dres) return dres.error();
    // S3 can answer 200 with an error in the body.
    if (dres->status != 200 || !xml_text(dres->body, "Code").empty())
      return status_error(done, *dres);
    ObjectInfo i;
    i.key = key;
    i.size = size;
    i.etag = trim_quotes(xml_text(dres->body, "ETag"));
    i.sha256 = opt.sha256;
    return i;
  }

  std::string bucket_;
  S3Options opt_;
  Credentials creds_;
  std::string scheme_, host_, base_path_;
  HandlePool pool_;
};

}  // namespace

Result<std::unique_ptr<ObjectStore>> make_s3_store(const std::string& bucket,
                                                   const S3Options& opt) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (bucket.empty()) return invalid_input("an s3:// location needs a bucket (s3://BUCKET/KEY)");
  auto creds = load_credentials(opt.profile);
  if (!creds) return creds.error();
  return std::unique_ptr<ObjectStore>(std::make_unique<S3Store>(bucket, opt, std::move(*creds)));
}

}  // namespace hylab::storage
