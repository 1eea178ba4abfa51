// The lab configuration (hylab.yaml): the lab's inventory and running costs, the
// placement policy, and catalog overrides. Found from --config, $HYLAB_CONFIG or
// ~/.config/hylab/hylab.yaml. Loading reports every problem at once with
// file:line:column. A loaded Config is an immutable value: share it freely.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/catalog.h"
#include "common/diagnostics.h"
#include "common/schedule_spec.h"
#include "common/units.h"

namespace hylab {

struct LabGpu {
  std::string model;  // canonical catalog name
  int count = 0;
  std::uint64_t memory_bytes = 0;  // per card
  double tflops = 0;               // per card
};

struct Lab {
  std::string name = "lab";
  std::vector<LabGpu> gpus;
  int cpus = 0;
  std::uint64_t memory_bytes = 0;
  std::uint64_t disk_bytes = 0;
  double hardware_usd = 0;          // purchase price of the whole lab
  double service_life_months = 36;  // over which the hardware is amortised
  double busy_watts = 0;            // whole lab at full load
  double idle_watts = 0;            // whole lab idle
  double electricity_usd_per_kwh = 0.15;
  // IANA zone of the lab's clock: schedules without a timezone run in it (checked by
  // schedule::compile, where date/tz lives). Empty: UTC.
  std::string timezone;

  int gpu_count() const;
  std::uint64_t gpu_memory_bytes() const;
};

struct Policy {
  double breakeven_limit_months = 6;           // continuous work stays local under this
  std::uint64_t large_data_bytes = 100 * kGB;  // the data matrix's "100 GB"
  double max_local_wait_hours = 4;             // longest a job should queue for lab GPUs
  double large_job_hours = 24;                 // a one-time job longer than this locally is "large"
  int max_preemptions = 3;                     // a spot job preempted more often goes on-demand
  double monthly_cloud_budget_usd = 0;         // past it new cloud jobs wait; 0: no budget
};

// The control plane (`hylab serve`) and how clients reach it.
struct ServerConfig {
  std::string listen = "127.0.0.1:7460";  // host:port; port 0 picks a free one
  std::string state_dir;                  // database, token, job directories
  std::string tls_cert;                   // both set: HTTPS
  std::string tls_key;
  std::uint64_t max_body_bytes = 1ULL << 20;
  std::uint64_t log_max_bytes = 64ULL << 20;  // per job
  double cancel_grace_seconds = 10;
  double read_timeout_seconds = 30;
  double write_timeout_seconds = 30;
  double idle_timeout_seconds = 120;
  // Open connections; past it the longest-idle one is closed to make room.
  std::uint64_t max_connections = 1024;
};

// The inference gateway (`hylab gateway`): local endpoints first, cloud for overflow.
struct GatewayEndpoint {
  std::string name;
  std::string url;  // http://host:port or https://host:port (cloud)
  // Requests in flight at once. Defaults: 8 for a local endpoint (a GPU box), 256 for a
  // cloud one (an API that scales; its own rate limit answers 429/503, which the gateway
  // treats as busy).
  int max_inflight = 8;
  int weight = 1;
  std::vector<std::string> models;  // served models; empty: any
  // Cloud only.
  std::string api_key_env;  // the API key is read from this variable, never from the file
  double usd_per_1k_input = 0;
  double usd_per_1k_output = 0;
  std::string ca_file;  // https: trust this CA bundle instead of the system's
};

// Active health checks of local endpoints (gateway.health).
struct GatewayHealth {
  bool enabled = false;
  std::string path = "/health";
  double interval_seconds = 5;
  double timeout_seconds = 1;
  int healthy_threshold = 2;    // consecutive passes that bring an endpoint back
  int unhealthy_threshold = 3;  // consecutive failures that take it out
};

// The latency-based local limit (gateway.adaptive): a gradient controller in the manner
// of Netflix's Gradient2; the static max_inflight stays the ceiling.
struct GatewayAdaptive {
  bool enabled = false;
  int min_limit = 1;
  double tolerance = 2.0;        // short-term latency may reach tolerance x long-term
  double window_seconds = 0.25;  // how often the limit is recomputed
  double smoothing = 0.2;        // share of the new value taken at each update
};

struct GatewayConfig {
  bool present = false;  // a gateway: section was given
  std::string listen = "127.0.0.1:8400";
  std::string admin = "127.0.0.1:8401";
  int threads = 0;  // 0: one per core
  // While a loop's waits for its next event have lately averaged less than this and it was
  // at least half busy, it keeps asking epoll without sleeping for this long after its last
  // event: under load no thread sleeps between events, so no peer pays to wake it. 0: never.
  int busy_poll_us = 100;
  std::vector<GatewayEndpoint> local;
  std::vector<GatewayEndpoint> cloud;
  std::vector<std::pair<std::string, std::string>> models;  // local model -> cloud model
  std::string sensitive_header = "X-Hylab-Data";
  // Other ways a request is sensitive (gateway.privacy): its path matches one of these
  // globs; it bears one of these client keys (values of the named variables); its body
  // contains one of these patterns (case-insensitive, '#' matches a digit).
  std::vector<std::string> sensitive_routes;
  std::vector<std::string> sensitive_client_key_envs;
  std::vector<std::string> sensitive_patterns;
  double queue_timeout_ms = 0;               // wait for a local slot before overflowing
  double sensitive_queue_timeout_ms = 5000;  // how long sensitive requests wait, then 503
  double daily_cloud_budget_usd = 0;         // 0: no budget
  double connect_timeout_seconds = 2;
  double response_timeout_seconds = 60;
  double client_timeout_seconds = 30;
  double idle_timeout_seconds = 60;
  double first_token_timeout_seconds = 0;  // 0: the response timeout
  double drain_timeout_seconds = 30;       // at SIGTERM, for requests in flight
  std::uint64_t max_header_bytes = 16ULL * 1024;
  std::uint64_t max_body_bytes = 8ULL << 20;
  // Open client connections (shared among the threads); past it the longest-idle one is
  // closed to make room.
  std::uint64_t max_connections = 10000;
  double retry_budget_percent = 20;  // retries in flight, as a share of requests in flight
  int retry_min_concurrent = 3;      // retries always allowed up to this many at once
  GatewayHealth health;
  GatewayAdaptive adaptive;
};

// Hybrid storage (`hylab data`): where objects live, the local cache, and what never leaves.
struct StorageConfig {
  std::string remote;               // s3://bucket/prefix or file:///path; empty: no default remote
  std::string endpoint_url;         // empty: $AWS_ENDPOINT_URL, else AWS's for the region
  std::string region;               // empty: $AWS_REGION, $AWS_DEFAULT_REGION, else us-east-1
  std::string addressing = "path";  // "path" or "virtual"
  std::string profile;              // credentials profile; empty: $AWS_PROFILE or default
  std::string
      cache_dir;  // relative: to the config file; empty: $XDG_CACHE_HOME/hylab or ~/.cache/hylab
  std::uint64_t cache_max_size = 50ULL << 30;
  double cache_max_age_seconds = 0;  // 0: no maximum age
  double revalidate_after_seconds = 60;
  // Paths or globs (relative ones to the config file's folder) that never go to a remote;
  // shareable ones inside them may.
  std::vector<std::string> sensitive;
  std::vector<std::string> shareable;
  std::string base_dir;                             // the config file's folder
  int parallel = 8;                                 // transfers at once
  std::uint64_t multipart_threshold = 64ULL << 20;  // larger objects move in parts
  std::uint64_t part_size = 16ULL << 20;
  // A large download stays one stream while that brings at least this many bytes a second;
  // slower, the rest is split into part_size ranges. 0: never; ~0 ("always"): from the start.
  std::uint64_t split_below = 256ULL << 20;
};

// A cloud target jobs placed in the cloud are handed to (clouds: in hylab.yaml). Slurm is
// the engine of cloud HPC clusters (ParallelCluster, Cluster Toolkit, CycleCloud).
struct CloudTarget {
  std::string name;
  std::string kind = "slurm";
  std::string partition;       // on-demand jobs
  std::string spot_partition;  // spot jobs (--requeue); empty: spot jobs use `partition`
  std::string instance;        // the catalog instance that prices a node of it
  std::string provider;        // aws, gcp, ...: pinned jobs go only where it matches
  std::string region;          // empty: none declared (a region pin does not match)
  std::string ssh;             // run the cluster's commands through `ssh HOST`; empty: here
  std::map<std::string, std::string> env;  // for those commands (e.g. SLURM_CONF)
};

// $XDG_DATA_HOME/hylab, else ~/.local/share/hylab.
std::string default_state_dir();
inline std::string state_dir_of(const ServerConfig& s) {
  return s.state_dir.empty() ? default_state_dir() : s.state_dir;
}

struct Config {
  std::string source = "(built-in defaults)";  // file it came from
  bool has_lab = false;                        // false: no lab section, nothing local
  Lab lab;
  Policy policy;
  ServerConfig server;
  GatewayConfig gateway;
  StorageConfig storage;
  std::vector<CloudTarget> clouds;
  std::vector<ScheduleSpec> schedules;  // schedules: (their jobs loaded and checked)
  Catalog catalog = builtin_catalog();
};

// Where the config comes from: the flag, then $HYLAB_CONFIG, then the user's default
// file. Returns nothing when none is given and the default file does not exist.
struct ConfigLocation {
  std::string path;
  std::string how;  // "--config", "$HYLAB_CONFIG", "~/.config/hylab/hylab.yaml"
};
std::optional<ConfigLocation> locate_config(const std::optional<std::string>& flag);
std::string default_config_path();

std::optional<Config> load_config_text(std::string_view text, const std::string& file,
                                       Diagnostics& diag);
std::optional<Config> load_config_file(const std::string& path, Diagnostics& diag);

// Reads a whole file with a size limit; an error names the file and the reason.
Result<std::string> read_text_file(const std::string& path, std::size_t max_bytes);

}  // namespace hylab
