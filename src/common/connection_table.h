// The open connections of one server loop, capped. Both of hylab's servers (`serve` and each
// gateway worker) register every connection here with what it is doing: waiting for a
// request (idle), receiving one (reading) or handling one (busy). Past the cap, the server
// makes room before it accepts another: the connection whose current wait began earliest
// among the idle and reading ones is aborted (a keep-alive connection nobody uses, or a
// client that sends a byte a minute), as nginx reuses idle keep-alive connections. When
// every connection is busy, nothing is aborted and new connections wait in the listen
// backlog until one ends (the accept loop waits for released()).
//
// One loop thread; O(1) per change of phase, eviction scans past busy connections only.
#pragma once

#include <sys/resource.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>

namespace hylab {

class ConnectionTable {
 public:
  enum class Phase { kIdle, kReading, kBusy };

 private:
  struct Entry {
    Phase phase = Phase::kIdle;
    bool aborted = false;
    std::function<void()> abort;  // ends the connection's pending I/O; its session closes it
  };

 public:
  using Handle = std::list<Entry>::iterator;

  explicit ConnectionTable(std::size_t cap = 1024) : cap_(cap == 0 ? 1 : cap) {}
  ConnectionTable(const ConnectionTable&) = delete;
  ConnectionTable& operator=(const ConnectionTable&) = delete;

  void set_cap(std::size_t cap) { cap_ = cap == 0 ? 1 : cap; }
  std::size_t cap() const { return cap_; }

  // A new connection, idle: `abort` must make its session end soon (cancel its I/O).
  Handle add(std::function<void()> abort) {
    entries_.push_back(Entry{Phase::kIdle, false, std::move(abort)});
    return std::prev(entries_.end());
  }
  // The connection starts a new phase: it goes to the back of the eviction order.
  void set(Handle h, Phase p) {
    h->phase = p;
    entries_.splice(entries_.end(), entries_, h);
  }
  void remove(Handle h) {
    if (h->aborted) --aborting_;
    entries_.erase(h);
    if (on_release_) on_release_();
  }

  // Before accepting one more connection: aborts the longest-waiting idle or reading
  // connections until there is room. False when every open connection is busy.
  bool make_room() {
    while (live() >= cap_) {
      auto victim = entries_.end();
      for (auto it = entries_.begin(); it != entries_.end(); ++it) {
        if (!it->aborted && it->phase != Phase::kBusy) {
          victim = it;
          break;
        }
      }
      if (victim == entries_.end()) return false;
      victim->aborted = true;
      ++aborting_;
      ++evicted_;
      victim->abort();
    }
    return true;
  }

  // Called whenever a connection goes (so an accept loop waiting for room can try again).
  void on_release(std::function<void()> fn) { on_release_ = std::move(fn); }

  // Open connections not already being closed to make room.
  std::size_t live() const { return entries_.size() - aborting_; }
  std::size_t size() const { return entries_.size(); }
  std::uint64_t evicted() const { return evicted_; }

  // Registers a connection for the scope of its session.
  class Registration {
   public:
    Registration(ConnectionTable& t, std::function<void()> abort)
        : t_(t), h_(t.add(std::move(abort))) {}
    Registration(const Registration&) = delete;
    Registration& operator=(const Registration&) = delete;
    ~Registration() { t_.remove(h_); }
    void set(Phase p) { t_.set(h_, p); }
    bool aborted() const { return h_->aborted; }

   private:
    ConnectionTable& t_;
    Handle h_;
  };

 private:
  std::size_t cap_;
  std::size_t aborting_ = 0;
  std::uint64_t evicted_ = 0;
  std::list<Entry> entries_;
  std::function<void()> on_release_;
};

// Raises this process' soft limit of open files to its hard limit (a server that caps its
// connections should be able to reach the cap); returns the limit now in force.
inline std::uint64_t raise_open_files_limit() {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0) return 0;
  if (r.rlim_cur < r.rlim_max) {
    rlimit want = r;
    want.rlim_cur = r.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &want) == 0) r = want;
  }
  return r.rlim_cur;
}

}  // namespace hylab
