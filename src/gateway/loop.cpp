#include "gateway/loop.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <cerrno>
#include <cstdio>
#include <system_error>

namespace hylab::gateway::loop {

namespace asio = boost::asio;

namespace {

constexpr std::size_t kGranule = 64;
constexpr std::size_t kClasses = 64;  // frames up to 4 KiB are recycled
constexpr std::uint64_t kWakeKey = ~std::uint64_t{0};
constexpr std::uint32_t kReadEvents = EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP;
constexpr std::uint32_t kWriteEvents = EPOLLOUT | EPOLLERR | EPOLLHUP;

struct FreeLists {
  std::array<void*, kClasses> heads{};
  FreeLists() = default;
  FreeLists(const FreeLists&) = delete;
  FreeLists& operator=(const FreeLists&) = delete;
  ~FreeLists() {
    for (void*& head : heads) {
      while (head) {
        void* next = *static_cast<void**>(head);
        ::operator delete(head);
        head = next;
      }
    }
  }
};
thread_local FreeLists free_lists;

error_code sys_error(int e) { return error_code(e, boost::system::system_category()); }

}  // namespace

void* frame_alloc(std::size_t n) {
#if defined(__SANITIZE_ADDRESS__)
  return ::operator new(n);  // every frame its own block, for the sanitizer's checks
#else
  std::size_t c = (n + kGranule - 1) / kGranule;
  if (c == 0 || c > kClasses) return ::operator new(n);
  void*& head = free_lists.heads[c - 1];
  if (head) {
    void* p = head;
    head = *static_cast<void**>(p);
    return p;
  }
  return ::operator new(c* kGranule);
#endif
}

void frame_free(void* p, std::size_t n) noexcept {
#if defined(__SANITIZE_ADDRESS__)
  (void)n;
  ::operator delete(p);
#else
  std::size_t c = (n + kGranule - 1) / kGranule;
  if (c == 0 || c > kClasses) {
    ::operator delete(p);
    return;
  }
  void*& head = free_lists.heads[c - 1];
  *static_cast<void**>(p) = head;
  head = p;
#endif
}

// ---- Sleeper ----

Sleeper::Sleeper(Loop& loop) : loop_(loop) {
  node_.fire = &Sleeper::fired;
  node_.owner = this;
}

Sleeper::~Sleeper() {
  if (node_.armed()) loop_.disarm(node_);
}

void Sleeper::Wait::await_suspend(std::coroutine_handle<> h) noexcept {
  s.waiting_ = h;
  s.loop_.arm(s.node_);
}

void Sleeper::wake() {
  if (!waiting_) return;
  if (node_.armed()) loop_.disarm(node_);
  loop_.defer(std::exchange(waiting_, {}));
}

void Sleeper::fired(TimerNode* n) {
  auto* s = static_cast<Sleeper*>(n->owner);
  if (s->waiting_) s->loop_.defer(std::exchange(s->waiting_, {}));
}

// ---- Stream ----

Stream::Stream(Loop& loop, int fd) : loop_(loop), fd_(fd) {
  deadline_node_.fire = &Stream::deadline_fired;
  deadline_node_.owner = this;
  loop_.add(*this);
}

Stream::~Stream() {
  if (deadline_node_.armed()) loop_.disarm(deadline_node_);
  loop_.remove(*this);
  if (ssl_) SSL_free(ssl_);
  ::close(fd_);
}

void Stream::set_deadline(Clock::duration d) {
  expired_ = false;
  deadline_ = loop_.now() + d;
  // Later than the armed wake-up: the wake-up finds it moved and re-arms then.
  if (deadline_node_.armed()) {
    if (deadline_ >= deadline_node_.when) return;
    loop_.disarm(deadline_node_);
  }
  deadline_node_.when = deadline_;
  loop_.arm(deadline_node_);
}

void Stream::deadline_fired(TimerNode* n) {
  auto* s = static_cast<Stream*>(n->owner);
  if (s->loop_.now() < s->deadline_) {
    n->when = s->deadline_;
    s->loop_.arm(*n);
    return;
  }
  s->deadline_ = Clock::time_point::max();
  s->expired_ = true;
  s->cancel();
}

void Stream::cancel() {
  for (Op* op : {&rd_, &wr_}) {
    if (!op->waiting) continue;
    op->ec = asio::error::operation_aborted;
    loop_.defer(std::exchange(op->waiting, {}));
  }
}

void Stream::shutdown_send() { ::shutdown(fd_, SHUT_WR); }

void Stream::on_events(std::uint32_t events) {
  if (events & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)) hung_up_ = true;
  if (events & kReadEvents) may_read_ = true;
  if (events & kWriteEvents) may_write_ = true;
  std::coroutine_handle<> first;
  for (Op* op : {&rd_, &wr_}) {
    if (!op->waiting) continue;
    if (!(op->want == EPOLLIN ? may_read_ : may_write_)) continue;
    if (!op->perform(*this, *op)) continue;
    auto h = std::exchange(op->waiting, {});
    if (first) {
      loop_.defer(h);
    } else {
      first = h;
    }
  }
  if (first) first.resume();  // last: it may destroy this stream
}

bool Stream::start(Op& op) {
  if (expired_) {
    op.ec = asio::error::operation_aborted;
    return true;
  }
  // A TLS stream may hold decrypted bytes the socket no longer shows: always try it.
  bool may = op.want == EPOLLIN ? may_read_ : may_write_;
  return (may || ssl_) && op.perform(*this, op);
}

// Fairness: a peer that always has bytes ready (a client pipelining requests the gateway
// answers itself, say) would never suspend; every 64th operation in a row that completed at
// once goes through the loop, so every other socket gets its turn.
constexpr int kMaxStreak = 64;

bool Stream::Await::await_ready() {
  op.yield = false;
  if (!s.start(op)) {
    s.streak_ = 0;
    return false;
  }
  if (++s.streak_ < kMaxStreak) return true;
  s.streak_ = 0;
  op.yield = true;
  return false;
}

void Stream::Await::await_suspend(std::coroutine_handle<> h) noexcept {
  if (op.yield) {
    s.loop_.defer(h);
  } else {
    op.waiting = h;
  }
}

IoResult Stream::Await::await_resume() noexcept { return {op.ec, op.bytes}; }

Stream::Await Stream::begin(Op& op, bool (*perform)(Stream&, Op&), std::uint32_t want) {
  op.perform = perform;
  op.want = want;
  op.bytes = 0;
  op.ec = {};
  return Await{*this, op};
}

Stream::Await Stream::read_some(char* p, std::size_t n) {
  rd_.data = p;
  rd_.size = n;
  return begin(rd_, ssl_ ? &Stream::do_tls_read : &Stream::do_read, EPOLLIN);
}

Stream::Await Stream::write_all(std::string_view a, std::string_view b, std::string_view c,
                                std::string_view d, std::string_view e) {
  const std::string_view parts[] = {a, b, c, d, e};
  wr_.iovcnt = 0;
  wr_.size = 0;
  for (std::string_view part : parts) {
    if (part.empty()) continue;
    wr_.iov[static_cast<std::size_t>(wr_.iovcnt++)] = {const_cast<char*>(part.data()), part.size()};
    wr_.size += part.size();
  }
  if (ssl_ && wr_.iovcnt > 1) {  // one record for the whole message
    tls_out_.clear();
    for (int i = 0; i < wr_.iovcnt; ++i)
      tls_out_.append(static_cast<const char*>(wr_.iov[static_cast<std::size_t>(i)].iov_base),
                      wr_.iov[static_cast<std::size_t>(i)].iov_len);
    wr_.iov[0] = {tls_out_.data(), tls_out_.size()};
    wr_.iovcnt = 1;
  }
  return begin(wr_, ssl_ ? &Stream::do_tls_write : &Stream::do_write, EPOLLOUT);
}

Stream::Await Stream::accept() { return begin(rd_, &Stream::do_accept, EPOLLIN); }

Stream::Await Stream::connected() { return begin(wr_, &Stream::do_connect, EPOLLOUT); }

Stream::Await Stream::handshake() { return begin(wr_, &Stream::do_handshake, EPOLLOUT); }

bool Stream::do_read(Stream& s, Op& op) {
  for (;;) {
    ssize_t r = ::recv(s.fd_, op.data, op.size, 0);
    if (r > 0) {
      // A short read drained the socket: the next read waits for the next event, unless
      // the peer has closed (that event came already and will not come again).
      if (static_cast<std::size_t>(r) < op.size && !s.hung_up_) s.may_read_ = false;
      op.bytes = static_cast<std::size_t>(r);
      return true;
    }
    if (r == 0) {
      op.ec = asio::error::eof;
      return true;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      s.may_read_ = false;
      return false;
    }
    op.ec = sys_error(errno);
    return true;
  }
}

bool Stream::do_write(Stream& s, Op& op) {
  for (;;) {
    ssize_t r;
    if (op.iovcnt == 1) {
      r = ::send(s.fd_, op.iov[0].iov_base, op.iov[0].iov_len, MSG_NOSIGNAL);
    } else {
      msghdr msg{};
      msg.msg_iov = op.iov.data();
      msg.msg_iovlen = static_cast<std::size_t>(op.iovcnt);
      r = ::sendmsg(s.fd_, &msg, MSG_NOSIGNAL);
    }
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        s.may_write_ = false;
        return false;
      }
      op.ec = sys_error(errno);
      return true;
    }
    auto n = static_cast<std::size_t>(r);
    op.bytes += n;
    if (op.bytes >= op.size) return true;
    // Partly written: drop what went out and wait for room (the kernel signals it).
    int i = 0;
    while (n > 0 && n >= op.iov[static_cast<std::size_t>(i)].iov_len) {
      n -= op.iov[static_cast<std::size_t>(i)].iov_len;
      ++i;
    }
    for (int j = i; j < op.iovcnt; ++j)
      op.iov[static_cast<std::size_t>(j - i)] = op.iov[static_cast<std::size_t>(j)];
    op.iovcnt -= i;
    op.iov[0].iov_base = static_cast<char*>(op.iov[0].iov_base) + n;
    op.iov[0].iov_len -= n;
    s.may_write_ = false;
    return false;
  }
}

bool Stream::do_accept(Stream& s, Op& op) {
  for (;;) {
    int fd = ::accept4(s.fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      op.bytes = static_cast<std::size_t>(fd);
      return true;
    }
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      s.may_read_ = false;
      return false;
    }
    op.ec = sys_error(errno);
    return true;
  }
}

bool Stream::do_connect(Stream& s, Op& op) {
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(s.fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err != 0) {
    op.ec = sys_error(err);
    return true;
  }
  sockaddr_storage peer{};
  socklen_t plen = sizeof peer;
  if (::getpeername(s.fd_, reinterpret_cast<sockaddr*>(&peer), &plen) == 0) return true;
  if (errno != ENOTCONN) {
    op.ec = sys_error(errno);
    return true;
  }
  s.may_write_ = false;  // still connecting: the kernel signals the outcome
  return false;
}

error_code Stream::attach_tls(SSL_CTX* ctx, const std::string& host) {
  ssl_ = SSL_new(ctx);
  if (!ssl_ || SSL_set_fd(ssl_, fd_) != 1) {
    return error_code(static_cast<int>(ERR_get_error()), asio::error::get_ssl_category());
  }
  SSL_set_connect_state(ssl_);
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
  if (X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str()) != 1) {  // not an address: a name
    ERR_clear_error();
    SSL_set_tlsext_host_name(ssl_, host.c_str());
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size());
  }
  return {};
}

// After an SSL call that returned `r` <= 0: whether to wait (and for what), or the error.
bool Stream::tls_wants(Op& op, int r) {
  int e = SSL_get_error(ssl_, r);
  if (e == SSL_ERROR_WANT_READ) {
    may_read_ = false;
    op.want = EPOLLIN;
    return true;
  }
  if (e == SSL_ERROR_WANT_WRITE) {
    may_write_ = false;
    op.want = EPOLLOUT;
    return true;
  }
  unsigned long code = ERR_get_error();
  if (e == SSL_ERROR_ZERO_RETURN) {
    op.ec = asio::error::eof;
  } else if (code != 0) {
    op.ec = error_code(static_cast<int>(code), asio::error::get_ssl_category());
  } else if (e == SSL_ERROR_SYSCALL && errno != 0) {
    op.ec = sys_error(errno);
  } else {
    op.ec = asio::ssl::error::stream_truncated;
  }
  ERR_clear_error();
  return false;
}

bool Stream::do_tls_read(Stream& s, Op& op) {
  ERR_clear_error();
  int r = SSL_read(s.ssl_, op.data, static_cast<int>(std::min<std::size_t>(op.size, 1 << 30)));
  if (r > 0) {
    op.bytes = static_cast<std::size_t>(r);
    return true;
  }
  return !s.tls_wants(op, r);
}

bool Stream::do_tls_write(Stream& s, Op& op) {
  ERR_clear_error();
  if (op.size == 0) return true;
  int r = SSL_write(s.ssl_, op.iov[0].iov_base, static_cast<int>(op.iov[0].iov_len));
  if (r > 0) {
    op.bytes = op.size;
    return true;
  }
  return !s.tls_wants(op, r);
}

bool Stream::do_handshake(Stream& s, Op& op) {
  ERR_clear_error();
  int r = SSL_do_handshake(s.ssl_);
  if (r == 1) return true;
  return !s.tls_wants(op, r);
}

Task<Connected> connect(Loop& loop, const std::vector<Address>& addresses,
                        Clock::duration deadline_after) {
  Connected out;
  out.ec = asio::error::host_not_found;
  Clock::time_point deadline = loop.now() + deadline_after;
  for (const Address& a : addresses) {
    int fd = ::socket(a.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      out.ec = sys_error(errno);
      continue;
    }
    auto s = std::make_unique<Stream>(loop, fd);
    s->set_deadline(deadline - loop.now());
    error_code ec;
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&a.addr), a.len) != 0) {
      if (errno == EINPROGRESS) {
        ec = (co_await s->connected()).ec;
      } else {
        ec = sys_error(errno);
      }
    }
    if (!ec) {
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      out.stream = std::move(s);
      out.ec = {};
      out.timed_out = false;
      co_return out;
    }
    out.ec = ec;
    if (s->expired()) {
      out.timed_out = true;
      break;
    }
  }
  co_return out;
}

// ---- Loop ----

struct Loop::RootPromise : FrameAlloc {
  struct Root {
    using promise_type = RootPromise;
    std::coroutine_handle<RootPromise> h;
  };
  Loop* loop = nullptr;
  RootPromise* prev = nullptr;
  RootPromise* next = nullptr;
  Root get_return_object() noexcept {
    return Root{std::coroutine_handle<RootPromise>::from_promise(*this)};
  }
  std::suspend_always initial_suspend() noexcept { return {}; }
  struct Final {
    bool await_ready() noexcept { return false; }
    void await_suspend(std::coroutine_handle<RootPromise> h) noexcept {
      h.promise().unlink();
      h.destroy();
    }
    void await_resume() noexcept {}
  };
  Final final_suspend() noexcept { return {}; }
  void return_void() noexcept {}
  // A connection's failure ends that connection only; it is counted and said once each.
  void unhandled_exception() noexcept {
    loop->unhandled_.fetch_add(1, std::memory_order_relaxed);
    try {
      throw;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "hylab gateway: a connection ended on an internal error: %s\n",
                   e.what());
    } catch (...) {
      std::fprintf(stderr, "hylab gateway: a connection ended on an internal error\n");
    }
  }
  void unlink() {
    (prev ? prev->next : loop->roots_) = next;
    if (next) next->prev = prev;
    prev = next = nullptr;
  }
};

namespace {
Loop::RootPromise::Root run_root(Task<void> task) { co_await std::move(task); }
}  // namespace

Loop::Loop() {
  epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeKey;
  if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, wake_fd_, &ev) != 0)
    throw std::system_error(errno, std::generic_category(), "epoll_ctl");
}

Loop::~Loop() {
  destroy_roots();
  ::close(wake_fd_);
  ::close(epfd_);
}

void Loop::destroy_roots() {
  ready_.clear();
  while (roots_) {
    RootPromise* r = roots_;
    r->unlink();
    std::coroutine_handle<RootPromise>::from_promise(*r).destroy();
    ready_.clear();  // resumptions its streams and sleepers deferred while they went
  }
}

void Loop::spawn(Task<void> task) {
  auto root = run_root(std::move(task));
  RootPromise& p = root.h.promise();
  p.loop = this;
  p.next = roots_;
  if (roots_) roots_->prev = &p;
  roots_ = &p;
  root.h.resume();
}

void Loop::add(Stream& s) {
  auto fd = static_cast<std::size_t>(s.fd_);
  if (fd >= streams_.size()) {
    streams_.resize(fd + 1, nullptr);
    generations_.resize(fd + 1, 0);
  }
  streams_[fd] = &s;
  std::uint32_t gen = ++generations_[fd];
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.u64 = (static_cast<std::uint64_t>(gen) << 32) | fd;
  if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, s.fd_, &ev) != 0) {
    int e = errno;
    streams_[fd] = nullptr;
    ::close(s.fd_);
    throw std::system_error(e, std::generic_category(), "epoll_ctl");
  }
}

void Loop::remove(Stream& s) {
  auto fd = static_cast<std::size_t>(s.fd_);
  if (fd < streams_.size() && streams_[fd] == &s) {
    streams_[fd] = nullptr;
    ++generations_[fd];  // events already fetched for this descriptor are dropped
  }
}

void Loop::post(std::function<void()> fn) {
  {
    std::lock_guard lock(mailbox_mutex_);
    mailbox_.push_back(std::move(fn));
  }
  std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
}

void Loop::stop() {
  post([this] { stopping_ = true; });
}

void Loop::drain_mailbox() {
  std::uint64_t count;
  [[maybe_unused]] auto n = ::read(wake_fd_, &count, sizeof count);
  std::vector<std::function<void()>> work;
  {
    std::lock_guard lock(mailbox_mutex_);
    work.swap(mailbox_);
  }
  for (auto& fn : work) fn();
}

// Resumes what was deferred before this call; what those defer waits for the next turn,
// after epoll has been asked again.
void Loop::run_ready() {
  for (std::size_t n = ready_.size(); n > 0 && !ready_.empty(); --n) {
    auto h = ready_.front();
    ready_.pop_front();
    h.resume();
  }
}

void Loop::run_timers() {
  while (!heap_.empty() && heap_.front()->when <= now_) {
    TimerNode* n = heap_.front();
    disarm(*n);
    n->fire(n);
  }
}

// Busy polling, only under load: while the waits for the next event have lately averaged
// under busy_poll_ and the loop spent at least half of the last 10 ms working, it asks epoll
// again without sleeping (up to busy_poll_) before it blocks. A sleeping thread makes the peer
// that wakes it pay for the wake-up, under load a visible share of the client's and the
// upstream's CPU. With events far apart, or a loop mostly idle (a few thousand requests a
// second: events close together, but little work), it sleeps at once and never spins.
constexpr double kSpinFromBusyShare = 0.5;
constexpr auto kShareWindow = std::chrono::milliseconds(10);

int Loop::wait(epoll_event* events, int max, int timeout, Clock::time_point start) {
  worked_ += start - now_;
  int n = 0;
  if (busy_poll_.count() > 0 && timeout != 0 && gap_ < busy_poll_ &&
      busy_share_ >= kSpinFromBusyShare) {
    Clock::time_point wake =
        timeout < 0 ? Clock::time_point::max() : start + std::chrono::milliseconds(timeout);
    Clock::time_point until = std::min(wake, start + busy_poll_);
    do {
      n = ::epoll_wait(epfd_, events, max, 0);
      now_ = Clock::now();
    } while (n == 0 && now_ < until);
    if (n == 0 && now_ < wake) {
      timeout =
          timeout < 0
              ? -1
              : static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(wake - now_).count());
      n = ::epoll_wait(epfd_, events, max, timeout);
      now_ = Clock::now();
    }
  } else {
    n = ::epoll_wait(epfd_, events, max, timeout);
    now_ = Clock::now();
  }
  if (timeout != 0) gap_ += (now_ - start - gap_) / 8;  // a moving average of the waits
  waited_ += now_ - start;
  if (worked_ + waited_ >= kShareWindow) {
    busy_share_ = std::chrono::duration<double>(worked_) / (worked_ + waited_);
    worked_ = waited_ = Clock::duration::zero();
  }
  return n;
}

void Loop::run() {
  std::array<epoll_event, 256> events{};
  now_ = Clock::now();
  while (!stopping_) {
    run_ready();
    if (stopping_) break;
    Clock::time_point start = Clock::now();  // one clock read per turn, for both uses
    int timeout = -1;
    if (!ready_.empty()) {
      timeout = 0;
    } else if (!heap_.empty()) {
      auto ms = std::chrono::ceil<std::chrono::milliseconds>(heap_.front()->when - start).count();
      timeout = static_cast<int>(std::clamp<std::int64_t>(ms, 0, 60'000));
    }
    int n = wait(events.data(), static_cast<int>(events.size()), timeout, start);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::system_error(errno, std::generic_category(), "epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      std::uint64_t key = events[static_cast<std::size_t>(i)].data.u64;
      if (key == kWakeKey) {
        drain_mailbox();
        continue;
      }
      auto fd = static_cast<std::size_t>(key & 0xffffffffu);
      auto gen = static_cast<std::uint32_t>(key >> 32);
      if (fd < streams_.size() && streams_[fd] && generations_[fd] == gen)
        streams_[fd]->on_events(events[static_cast<std::size_t>(i)].events);
    }
    run_timers();
  }
  destroy_roots();
}

// A binary min-heap of wake-up times; each node knows its index, so disarm is O(log n).
void Loop::arm(TimerNode& n) {
  n.index = heap_.size();
  heap_.push_back(&n);
  sift_up(n.index);
}

void Loop::disarm(TimerNode& n) {
  std::size_t i = n.index;
  if (i == TimerNode::kNotArmed) return;
  n.index = TimerNode::kNotArmed;
  TimerNode* last = heap_.back();
  heap_.pop_back();
  if (last == &n) return;
  heap_[i] = last;
  last->index = i;
  sift_up(i);
  sift_down(last->index);
}

void Loop::sift_up(std::size_t i) {
  while (i > 0) {
    std::size_t parent = (i - 1) / 2;
    if (heap_[parent]->when <= heap_[i]->when) break;
    std::swap(heap_[parent], heap_[i]);
    heap_[parent]->index = parent;
    heap_[i]->index = i;
    i = parent;
  }
}

void Loop::sift_down(std::size_t i) {
  for (;;) {
    std::size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < heap_.size() && heap_[l]->when < heap_[m]->when) m = l;
    if (r < heap_.size() && heap_[r]->when < heap_[m]->when) m = r;
    if (m == i) return;
    std::swap(heap_[m], heap_[i]);
    heap_[m]->index = m;
    heap_[i]->index = i;
    i = m;
  }
}

}  // namespace hylab::gateway::loop
