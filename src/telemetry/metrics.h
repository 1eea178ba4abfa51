// The control plane's Prometheus metrics (prometheus-cpp registry): HTTP requests and
// latency by route and code, jobs by state and environment, GPUs free and used, this
// month's spend (by environment and cloud target), the cloud budget and preemptions, and the
// text exposition for /metrics. Event-loop thread only (prometheus-cpp itself is
// thread-safe; the gauges' refresh is not meant to race).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace hylab::telemetry {

struct JobCount {
  std::string state;
  std::string environment;
  std::int64_t count = 0;
};

// The storage cache's figures as `hylab data` last left them (stats.json in the cache folder).
struct StorageMetrics {
  std::uint64_t bytes = 0, max_bytes = 0, entries = 0;
  std::uint64_t hits = 0, revalidated = 0, misses = 0, evictions = 0, refused_uploads = 0;
};
// Their text exposition (hylab_storage_*), for /metrics and `hylab data cache stats`.
std::string storage_metrics_text(const StorageMetrics& m);

// Spend this calendar month (exec/spend.h computes it).
struct Spend {
  std::map<std::string, double> month_by_environment;
  std::map<std::string, double> month_by_target;  // cloud targets
  std::map<std::string, double> preemptions_by_target;
  double monthly_cloud_budget_usd = 0;
};

class ServerMetrics {
 public:
  ServerMetrics();
  ~ServerMetrics();
  void observe_request(std::string_view route, int code, double seconds);
  void set_jobs(const std::vector<JobCount>& counts);
  void set_gpus(std::int64_t free, std::int64_t used, std::string_view source);
  void set_spend(const Spend& s);
  std::string render() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hylab::telemetry
