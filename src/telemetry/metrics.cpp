#include "telemetry/metrics.h"

#include <fmt/format.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

namespace hylab::telemetry {

namespace {
constexpr const char* kStates[] = {"pending", "queued",    "running", "succeeded",
                                   "failed",  "cancelled", "lost"};
constexpr const char* kEnvironments[] = {"local", "cloud", "hybrid"};
}  // namespace

struct ServerMetrics::Impl {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  prometheus::Family<prometheus::Counter>& requests =
      prometheus::BuildCounter()
          .Name("hylab_http_requests_total")
          .Help("HTTP requests by route and status code")
          .Register(*registry);
  prometheus::Family<prometheus::Histogram>& latency =
      prometheus::BuildHistogram()
          .Name("hylab_http_request_duration_seconds")
          .Help("HTTP request latency by route")
          .Register(*registry);
  prometheus::Family<prometheus::Gauge>& jobs = prometheus::BuildGauge()
                                                    .Name("hylab_jobs")
                                                    .Help("Jobs by state and environment")
                                                    .Register(*registry);
  prometheus::Family<prometheus::Gauge>& gpus = prometheus::BuildGauge()
                                                    .Name("hylab_gpus")
                                                    .Help("Lab GPUs by status (free, used)")
                                                    .Register(*registry);
  prometheus::Family<prometheus::Gauge>& spend =
      prometheus::BuildGauge()
          .Name("hylab_spend_month_usd")
          .Help(
              "Spend this calendar month by environment (cloud: the targets' instance prices; "
              "local: the lab's running cost)")
          .Register(*registry);
  prometheus::Family<prometheus::Gauge>& target_spend =
      prometheus::BuildGauge()
          .Name("hylab_cloud_spend_month_usd")
          .Help("Cloud spend this calendar month by cloud target")
          .Register(*registry);
  prometheus::Family<prometheus::Gauge>& budget =
      prometheus::BuildGauge()
          .Name("hylab_cloud_budget_month_usd")
          .Help("The policy's monthly cloud budget (0: none)")
          .Register(*registry);
  prometheus::Family<prometheus::Gauge>& preemptions =
      prometheus::BuildGauge()
          .Name("hylab_cloud_preemptions_month")
          .Help("Preemptions (restarts) of this month's cloud jobs by target")
          .Register(*registry);
};

std::string storage_metrics_text(const StorageMetrics& m) {
  std::string s;
  auto metric = [&](const char* name, const char* type, const char* help, const std::string& rows) {
    s += fmt::format("# HELP {} {}\n# TYPE {} {}\n{}", name, help, name, type, rows);
  };
  metric("hylab_storage_cache_bytes", "gauge", "Bytes held by the local object cache.",
         fmt::format("hylab_storage_cache_bytes {}\n", m.bytes));
  metric("hylab_storage_cache_max_bytes", "gauge", "The cache's bound (storage.cache_max_size).",
         fmt::format("hylab_storage_cache_max_bytes {}\n", m.max_bytes));
  metric("hylab_storage_cache_entries", "gauge", "Objects in the cache.",
         fmt::format("hylab_storage_cache_entries {}\n", m.entries));
  metric("hylab_storage_cache_requests_total", "counter", "Cache reads by result.",
         fmt::format("hylab_storage_cache_requests_total{{result=\"hit\"}} {}\n"
                     "hylab_storage_cache_requests_total{{result=\"revalidated\"}} {}\n"
                     "hylab_storage_cache_requests_total{{result=\"miss\"}} {}\n",
                     m.hits, m.revalidated, m.misses));
  metric("hylab_storage_cache_evictions_total", "counter", "Entries evicted to keep the bound.",
         fmt::format("hylab_storage_cache_evictions_total {}\n", m.evictions));
  metric("hylab_storage_refused_uploads_total", "counter", "Uploads refused as sensitive.",
         fmt::format("hylab_storage_refused_uploads_total {}\n", m.refused_uploads));
  return s;
}

ServerMetrics::ServerMetrics() : impl_(std::make_unique<Impl>()) {
  for (const char* s : kStates) {
    for (const char* e : kEnvironments) impl_->jobs.Add({{"state", s}, {"environment", e}}).Set(0);
  }
}

ServerMetrics::~ServerMetrics() = default;

void ServerMetrics::observe_request(std::string_view route, int code, double seconds) {
  std::string r(route);
  impl_->requests.Add({{"route", r}, {"code", std::to_string(code)}}).Increment();
  impl_->latency
      .Add({{"route", r}},
           prometheus::Histogram::BucketBoundaries{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                   0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5})
      .Observe(seconds);
}

void ServerMetrics::set_jobs(const std::vector<JobCount>& counts) {
  for (const char* s : kStates) {
    for (const char* e : kEnvironments) impl_->jobs.Add({{"state", s}, {"environment", e}}).Set(0);
  }
  for (const auto& c : counts) {
    impl_->jobs.Add({{"state", c.state}, {"environment", c.environment}})
        .Set(static_cast<double>(c.count));
  }
}

void ServerMetrics::set_gpus(std::int64_t free, std::int64_t used, std::string_view source) {
  std::string src(source);
  impl_->gpus.Add({{"status", "free"}, {"source", src}}).Set(static_cast<double>(free));
  impl_->gpus.Add({{"status", "used"}, {"source", src}}).Set(static_cast<double>(used));
}

void ServerMetrics::set_spend(const Spend& s) {
  for (const char* e : kEnvironments) {
    auto it = s.month_by_environment.find(e);
    impl_->spend.Add({{"environment", e}}).Set(it == s.month_by_environment.end() ? 0 : it->second);
  }
  for (const auto& [t, usd] : s.month_by_target) impl_->target_spend.Add({{"target", t}}).Set(usd);
  for (const auto& [t, n] : s.preemptions_by_target) impl_->preemptions.Add({{"target", t}}).Set(n);
  impl_->budget.Add({}).Set(s.monthly_cloud_budget_usd);
}

std::string ServerMetrics::render() const {
  return prometheus::TextSerializer().Serialize(impl_->registry->Collect());
}

}  // namespace hylab::telemetry
