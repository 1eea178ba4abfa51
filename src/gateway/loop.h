// The gateway's event loop: one epoll instance per thread, C++20 coroutines resumed straight
// from it, sockets with a lazily moved deadline, plain or TLS (OpenSSL on the socket).
//
// Why not Asio here: every Asio operation goes through its scheduler queue (a lock, an
// operation object, a completion handler, then the coroutine machinery of asio::awaitable),
// which was about 11 % of the gateway's CPU per proxied request against HAProxy's event loop.
// This loop resumes the waiting coroutine from the epoll event itself, tries a read only when
// the socket may hold bytes (edge-triggered epoll; a short read means it is drained, so a
// read after sending a request waits for the event instead of failing with EAGAIN), and
// registers each socket once for both directions (no epoll_ctl per operation).
//
// Thread-safety: a Loop and everything on it belong to the thread that runs it; other
// threads reach it only through post() and stop().
#pragma once

#include <openssl/ssl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <atomic>
#include <boost/system/error_code.hpp>
#include <chrono>
#include <coroutine>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hylab::gateway::loop {

using Clock = std::chrono::steady_clock;
using error_code = boost::system::error_code;

// Coroutine frames come from per-thread free lists (one per 64-byte size class up to 4 KiB):
// a proxied request creates a handful of frames, none of them through malloc.
void* frame_alloc(std::size_t n);
void frame_free(void* p, std::size_t n) noexcept;

struct FrameAlloc {
  static void* operator new(std::size_t n) { return frame_alloc(n); }
  static void operator delete(void* p, std::size_t n) noexcept { frame_free(p, n); }
};

template <class T>
class Task;

namespace detail {

struct PromiseBase : FrameAlloc {
  std::coroutine_handle<> continuation = std::noop_coroutine();
  std::exception_ptr error;
  std::suspend_always initial_suspend() noexcept { return {}; }
  struct Final {
    bool await_ready() noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
      return h.promise().continuation;  // symmetric transfer: no stack growth
    }
    void await_resume() noexcept {}
  };
  Final final_suspend() noexcept { return {}; }
  void unhandled_exception() noexcept { error = std::current_exception(); }
};

template <class T>
struct Promise : PromiseBase {
  std::optional<T> value;
  Task<T> get_return_object() noexcept;
  template <class U>
  void return_value(U&& v) {
    value.emplace(std::forward<U>(v));
  }
  T take() {
    if (error) std::rethrow_exception(error);
    return std::move(*value);
  }
};

template <>
struct Promise<void> : PromiseBase {
  Task<void> get_return_object() noexcept;
  void return_void() noexcept {}
  void take() {
    if (error) std::rethrow_exception(error);
  }
};

}  // namespace detail

// A coroutine that starts when awaited and hands its result (or exception) to its awaiter.
template <class T = void>
class [[nodiscard]] Task {
 public:
  using promise_type = detail::Promise<T>;
  using Handle = std::coroutine_handle<promise_type>;
  explicit Task(Handle h) noexcept : h_(h) {}
  Task(Task&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  Task& operator=(Task&& o) noexcept {
    if (this != &o) {
      if (h_) h_.destroy();
      h_ = std::exchange(o.h_, {});
    }
    return *this;
  }
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  ~Task() {
    if (h_) h_.destroy();
  }
  bool await_ready() const noexcept { return false; }
  std::coroutine_handle<> await_suspend(std::coroutine_handle<> caller) noexcept {
    h_.promise().continuation = caller;
    return h_;
  }
  T await_resume() { return h_.promise().take(); }

 private:
  Handle h_;
};

namespace detail {
template <class T>
Task<T> Promise<T>::get_return_object() noexcept {
  return Task<T>(std::coroutine_handle<Promise<T>>::from_promise(*this));
}
inline Task<void> Promise<void>::get_return_object() noexcept {
  return Task<void>(std::coroutine_handle<Promise<void>>::from_promise(*this));
}
}  // namespace detail

class Loop;

// A point in time a loop wakes for; kept in the loop's heap while armed.
struct TimerNode {
  Clock::time_point when;
  std::size_t index = kNotArmed;
  void (*fire)(TimerNode*) = nullptr;
  void* owner = nullptr;
  static constexpr std::size_t kNotArmed = static_cast<std::size_t>(-1);
  bool armed() const { return index != kNotArmed; }
};

// A wait until a time point that another coroutine on the same loop can end early.
class Sleeper {
 public:
  explicit Sleeper(Loop& loop);
  Sleeper(const Sleeper&) = delete;
  Sleeper& operator=(const Sleeper&) = delete;
  ~Sleeper();
  struct Wait {
    Sleeper& s;
    bool await_ready() noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) noexcept;
    void await_resume() noexcept {}
  };
  Wait until(Clock::time_point when) {
    node_.when = when;
    return Wait{*this};
  }
  // Ends a pending wait (it resumes from the loop, not inside this call).
  void wake();

 private:
  static void fired(TimerNode* n);
  Loop& loop_;
  TimerNode node_;
  std::coroutine_handle<> waiting_;
};

struct IoResult {
  error_code ec;
  std::size_t bytes = 0;
};

// A socket on a loop: plain TCP, or TLS over it. Owns its descriptor. At most one read and
// one write pending at a time. A deadline (set_deadline) fails pending and later operations
// with operation_aborted once it has passed, until it is set again; moving it later costs a
// store.
class Stream {
 public:
  Stream(Loop& loop, int fd);
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream();

  int fd() const { return fd_; }
  Loop& loop() const { return loop_; }
  bool tls() const { return ssl_ != nullptr; }

  void set_deadline(Clock::duration d);
  bool expired() const { return expired_; }
  // Fails the pending operations with operation_aborted (they resume from the loop).
  void cancel();
  void shutdown_send();

  struct Op;
  struct Await {
    Stream& s;
    Op& op;
    bool await_ready();
    void await_suspend(std::coroutine_handle<> h) noexcept;
    IoResult await_resume() noexcept;
  };
  // Some bytes into [p, p + n); end of stream is asio::error::eof.
  Await read_some(char* p, std::size_t n);
  // All of up to five buffers, in order (one send(2), or sendmsg(2) for several).
  Await write_all(std::string_view a, std::string_view b = {}, std::string_view c = {},
                  std::string_view d = {}, std::string_view e = {});
  // A connection from a listening socket: IoResult::bytes is the new descriptor.
  Await accept();

  // TLS client side over this (connected) socket, verifying the certificate and the host
  // name against `ctx`'s verify settings.
  error_code attach_tls(SSL_CTX* ctx, const std::string& host);
  Await handshake();
  // Completion of a non-blocking connect(2) started on this socket.
  Await connected();

  struct Op {
    std::coroutine_handle<> waiting;
    bool (*perform)(Stream&, Op&) = nullptr;  // true when complete
    std::uint32_t want = 0;                   // EPOLLIN or EPOLLOUT while waiting
    char* data = nullptr;
    std::size_t size = 0;
    std::array<iovec, 5> iov{};
    int iovcnt = 0;
    error_code ec;
    std::size_t bytes = 0;
    bool yield = false;  // complete, but resumed from the loop to let other work run
  };

 private:
  friend class Loop;
  void on_events(std::uint32_t events);
  bool start(Op& op);
  Await begin(Op& op, bool (*perform)(Stream&, Op&), std::uint32_t want);
  void finish_cancelled(Op& op);
  static void deadline_fired(TimerNode* n);
  static bool do_read(Stream& s, Op& op);
  static bool do_write(Stream& s, Op& op);
  static bool do_accept(Stream& s, Op& op);
  static bool do_tls_read(Stream& s, Op& op);
  static bool do_tls_write(Stream& s, Op& op);
  static bool do_handshake(Stream& s, Op& op);
  static bool do_connect(Stream& s, Op& op);
  bool tls_wants(Op& op, int r);

  Loop& loop_;
  int fd_;
  SSL* ssl_ = nullptr;
  bool may_read_ = true;   // cleared by a short read or EAGAIN, set by the next event
  bool may_write_ = true;  // cleared by a short write or EAGAIN, set by the next event
  int streak_ = 0;         // operations in a row that completed without waiting
  bool hung_up_ = false;   // the peer closed or the socket failed: reads never wait again
  bool expired_ = false;
  Clock::time_point deadline_ = Clock::time_point::max();
  TimerNode deadline_node_;
  Op rd_;
  Op wr_;
  std::string tls_out_;  // gathered pieces of a TLS write
};

// A new TCP connection to the first of `addresses` that accepts one. `deadline_after`
// bounds the whole attempt; when it passes, `timed_out` is set.
struct Address {
  sockaddr_storage addr{};
  socklen_t len = 0;
};
struct Connected {
  std::unique_ptr<Stream> stream;
  error_code ec;
  bool timed_out = false;
};
Task<Connected> connect(Loop& loop, const std::vector<Address>& addresses,
                        Clock::duration deadline_after);

class Loop {
 public:
  Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;
  ~Loop();

  // Runs until stop(); then every coroutine still suspended on this loop is destroyed.
  void run();
  // From any thread.
  void post(std::function<void()> fn);
  void stop();

  // Destroys every coroutine still suspended on this loop (run() does it when it ends).
  void destroy_all() { destroy_roots(); }
  // Starts a detached coroutine now; the loop destroys it if it is still suspended at the end.
  void spawn(Task<void> task);
  // Resumes `h` from the loop, after the current event.
  void defer(std::coroutine_handle<> h) { ready_.push_back(h); }
  Clock::time_point now() const { return now_; }  // as of the last wake-up
  // How long run() keeps asking epoll without sleeping after its last event, while its waits
  // for an event have lately averaged less than that and it is at least half busy (0: never).
  void set_busy_poll(std::chrono::microseconds d) { busy_poll_ = d; }
  // Exceptions that ended a spawned coroutine (each ends that coroutine only; from any thread).
  std::uint64_t unhandled_exceptions() const { return unhandled_.load(std::memory_order_relaxed); }

  void arm(TimerNode& n);
  void disarm(TimerNode& n);

  struct RootPromise;  // of spawned coroutines (loop.cpp)

 private:
  friend class Stream;
  void add(Stream& s);
  void remove(Stream& s);
  int wait(epoll_event* events, int max, int timeout, Clock::time_point start);
  void run_ready();
  void run_timers();
  void drain_mailbox();
  void sift_up(std::size_t i);
  void sift_down(std::size_t i);
  void destroy_roots();

  int epfd_ = -1;
  int wake_fd_ = -1;
  bool stopping_ = false;
  std::chrono::microseconds busy_poll_{0};
  Clock::duration gap_ = std::chrono::seconds(1);  // how long waits for an event took lately
  Clock::duration worked_{};                       // of the current 10 ms: working
  Clock::duration waited_{};                       // and waiting for events
  double busy_share_ = 0;                          // worked / (worked + waited), last window
  Clock::time_point now_ = Clock::now();
  std::vector<Stream*> streams_;  // by descriptor
  std::vector<std::uint32_t> generations_;
  std::vector<TimerNode*> heap_;
  std::deque<std::coroutine_handle<>> ready_;
  RootPromise* roots_ = nullptr;  // detached coroutines, a doubly linked list
  std::atomic<std::uint64_t> unhandled_{0};
  std::mutex mailbox_mutex_;
  std::vector<std::function<void()>> mailbox_;
};

}  // namespace hylab::gateway::loop
