#include "common/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "../test_util.h"

namespace hylab {
namespace {

using ::testing::HasSubstr;

std::string config_errors(const std::string& yaml) {
  Diagnostics d;
  EXPECT_FALSE(load_config_text(yaml, "hylab.yaml", d).has_value());
  return d.str();
}

TEST(Config, ExampleConfigLoads) {
  Diagnostics d;
  auto cfg = load_config_file(std::string(HYLAB_SOURCE_DIR) + "/examples/hylab.yaml", d);
  ASSERT_TRUE(cfg) << d.str();
  EXPECT_TRUE(cfg->has_lab);
  EXPECT_EQ(cfg->lab.gpu_count(), 2);
  EXPECT_EQ(cfg->lab.gpus[0].model, "RTX4090");
  EXPECT_EQ(cfg->lab.gpus[0].memory_bytes, 24 * kGB);
  EXPECT_EQ(cfg->lab.memory_bytes, 128 * kGiB);
  EXPECT_EQ(cfg->lab.disk_bytes, 4 * kTB);
  EXPECT_DOUBLE_EQ(cfg->lab.idle_watts, 120);
  EXPECT_DOUBLE_EQ(cfg->policy.breakeven_limit_months, 6);
  EXPECT_EQ(cfg->policy.large_data_bytes, 100 * kGB);
  EXPECT_DOUBLE_EQ(cfg->policy.max_local_wait_hours, 4);
  // The override changes the listed spot price and nothing else.
  const Instance* p4d = cfg->catalog.find_instance("p4d.24xlarge");
  EXPECT_DOUBLE_EQ(p4d->spot_usd_per_hour, 11.57);
  EXPECT_DOUBLE_EQ(p4d->usd_per_hour, 32.77);
}

TEST(Config, PolicyDefaults) {
  Config cfg = testing::config_from("lab: {gpus: [{model: RTX3090}]}");
  EXPECT_DOUBLE_EQ(cfg.policy.breakeven_limit_months, 6);
  EXPECT_EQ(cfg.policy.max_preemptions, 3);
  EXPECT_DOUBLE_EQ(cfg.policy.monthly_cloud_budget_usd, 0);
  Config set = testing::config_from(
      "lab: {gpus: [{model: RTX3090}]}\npolicy: {max_preemptions: 1, monthly_cloud_budget_usd: "
      "250}\n");
  EXPECT_EQ(set.policy.max_preemptions, 1);
  EXPECT_DOUBLE_EQ(set.policy.monthly_cloud_budget_usd, 250);
  EXPECT_THAT(config_errors("policy:\n  monthly_cloud_budget_usd: -5\n"),
              HasSubstr("hylab.yaml:2:29: error: policy.monthly_cloud_budget_usd"));
  EXPECT_EQ(cfg.policy.large_data_bytes, 100 * kGB);
  EXPECT_EQ(cfg.lab.gpu_count(), 1);
  // Price and power default to the cards'.
  EXPECT_DOUBLE_EQ(cfg.lab.hardware_usd, 1499);
  EXPECT_DOUBLE_EQ(cfg.lab.busy_watts, 350);
}

TEST(Config, CatalogOverridesAndAdditions) {
  Config cfg = testing::config_from(R"(
catalog:
  spot_discount: 0.5
  gpus:
    - {name: MI300X, memory: 192GB, tflops: 1307}
  instances:
    - {name: g4dn.xlarge, usd_per_hour: 0.40}
    - {provider: lambda, name: gpu_8x_mi300x, gpu: MI300X, gpu_count: 8, vcpus: 128, memory: 2TiB, usd_per_hour: 20}
lab:
  gpus: [{model: MI300X, count: 1}]
)");
  EXPECT_DOUBLE_EQ(cfg.catalog.find_instance("g4dn.xlarge")->usd_per_hour, 0.40);
  EXPECT_DOUBLE_EQ(cfg.catalog.find_instance("g4dn.xlarge")->spot_usd_per_hour, 0.20);
  EXPECT_DOUBLE_EQ(cfg.catalog.find_instance("gpu_8x_mi300x")->spot_usd_per_hour, 10);
  EXPECT_EQ(cfg.lab.gpus[0].memory_bytes, 192 * kGB);
}

TEST(ConfigErrors, NameFileLineColumnAndKey) {
  EXPECT_EQ(config_errors("lab:\n  gpus:\n    - model: RTX4900\n"),
            "hylab.yaml:3:14: error: lab.gpus[0].model: unknown GPU model 'RTX4900' (did you mean "
            "'RTX4090'?)\n");
  EXPECT_EQ(config_errors("policy:\n  breakeven_limit_month: 6\n"),
            "hylab.yaml:2:3: error: policy.breakeven_limit_month: unknown key (did you mean "
            "'breakeven_limit_months'?)\n");
  EXPECT_EQ(config_errors("policy: {large_data_threshold: -1GB}\n"),
            "hylab.yaml:1:32: error: policy.large_data_threshold: a size cannot be negative, got "
            "'-1GB'\n");
  EXPECT_EQ(config_errors("lab: {gpus: [{model: RTX4090, count: 0}]}\n"),
            "hylab.yaml:1:38: error: lab.gpus[0].count: must be at least 1, got 0\n");
  EXPECT_EQ(config_errors("lab: {power: {busy_watts: 100, idle_watts: 200}}\n"),
            "hylab.yaml:1:6: error: lab.power.idle_watts: idle power (200 W) is above busy power "
            "(100 W)\n");
  EXPECT_THAT(config_errors("catalog: {instances: [{name: new-one, usd_per_hour: 1}]}\n"),
              HasSubstr("instance 'new-one' is not in the catalog: give provider, vcpus, memory"));
  EXPECT_THAT(config_errors("gatway: {}\n"),
              HasSubstr("hylab.yaml:1:1: error: gatway: unknown key (did you mean 'gateway'?)"));
  EXPECT_THAT(config_errors("gateway: {}\n"),
              HasSubstr("hylab.yaml:1:10: error: gateway: no endpoints: give at least one under "
                        "gateway.local or gateway.cloud"));
}

TEST(ConfigErrors, SeveralAtOnce) {
  std::string e =
      config_errors("lab:\n  cpus: many\n  disk: 4XB\npolicy:\n  max_local_wait: soon\n");
  EXPECT_THAT(e, HasSubstr("hylab.yaml:2:9: error: lab.cpus: expected a number, got 'many'"));
  EXPECT_THAT(e, HasSubstr("hylab.yaml:3:9: error: lab.disk: unknown size unit 'xb'"));
  EXPECT_THAT(e, HasSubstr("hylab.yaml:5:19: error: policy.max_local_wait: expected a duration"));
}

TEST(ConfigErrors, GatewayEndpointsNameTheKey) {
  Diagnostics d;
  auto cfg = load_config_text(R"(gateway:
  local:
    - {name: a, url: "https://10.0.0.2:8000"}
    - {name: b, url: "ftp://x", max_inflight: 0}
  cloud:
    - {url: "https://api.example.com"}
)",
                              "gw.yaml", d);
  EXPECT_FALSE(cfg);
  std::string e = d.str();
  EXPECT_THAT(e, HasSubstr("gw.yaml:3:22: error: gateway.local[0].url: local endpoints are plain "
                           "http:// inside the lab"));
  EXPECT_THAT(
      e,
      HasSubstr("gw.yaml:4:47: error: gateway.local[1].max_inflight: must be at least 1, got 0"));
  EXPECT_THAT(
      e, HasSubstr("gateway.local[1].url: expected an http:// or https:// URL, got 'ftp://x'"));
  EXPECT_THAT(e, HasSubstr("gateway.cloud[0].name: missing: every endpoint needs a name"));
  EXPECT_THAT(e, ::testing::Not(HasSubstr("no endpoints")));  // they were given, just wrong
}

TEST(Config, GatewaySection) {
  Config cfg = testing::config_from(R"(gateway:
  listen: 127.0.0.1:9000
  threads: 4
  busy_poll_us: 50
  local:
    - {name: vllm, url: "http://127.0.0.1:8000", max_inflight: 16, weight: 2}
  cloud:
    - {name: openai, url: "https://api.openai.com", api_key_env: OPENAI_API_KEY, usd_per_1k_input: 0.15, usd_per_1k_output: 0.6}
  models: {llama3.1-8b: gpt-4o-mini}
  timeouts: {connect: 500ms, response: 2m}
  limits: {max_body: 4MiB}
)");
  EXPECT_TRUE(cfg.gateway.present);
  EXPECT_EQ(cfg.gateway.listen, "127.0.0.1:9000");
  EXPECT_EQ(cfg.gateway.busy_poll_us, 50);
  EXPECT_EQ(cfg.gateway.local.at(0).max_inflight, 16);
  EXPECT_EQ(cfg.gateway.local.at(0).weight, 2);
  EXPECT_EQ(cfg.gateway.cloud.at(0).api_key_env, "OPENAI_API_KEY");
  EXPECT_DOUBLE_EQ(cfg.gateway.cloud.at(0).usd_per_1k_output, 0.6);
  EXPECT_EQ(cfg.gateway.models.at(0),
            (std::pair<std::string, std::string>{"llama3.1-8b", "gpt-4o-mini"}));
  EXPECT_DOUBLE_EQ(cfg.gateway.connect_timeout_seconds, 0.5);
  EXPECT_DOUBLE_EQ(cfg.gateway.response_timeout_seconds, 120);
  EXPECT_EQ(cfg.gateway.max_body_bytes, 4 * kMiB);
  // Unset: a cloud API takes 256 at once, a lab box 8; 10,000 client connections.
  EXPECT_EQ(cfg.gateway.cloud.at(0).max_inflight, 256);
  EXPECT_EQ(cfg.gateway.max_connections, 10000u);
  Config lab = testing::config_from(
      "gateway:\n  local:\n    - {name: a, url: \"http://127.0.0.1:1\"}\n"
      "  limits: {max_connections: 50}\nserver:\n  max_connections: 7\n");
  EXPECT_EQ(lab.gateway.local.at(0).max_inflight, 8);
  EXPECT_EQ(lab.gateway.max_connections, 50u);
  EXPECT_EQ(lab.server.max_connections, 7u);
  EXPECT_EQ(Config{}.server.max_connections, 1024u);
}

TEST(Config, GatewayHealthAdaptivePrivacyRetries) {
  Config cfg = testing::config_from(R"(gateway:
  local:
    - {name: vllm, url: "http://127.0.0.1:8000", models: [llama3.1-8b]}
  cloud:
    - {name: c, url: "https://api.example.com/openai", ca_file: /etc/ca.pem}
  queue_timeout_ms: 250
  sensitive_queue_timeout_ms: 1000
  timeouts: {first_token: 2s}
  health: {path: /health, interval: 2s, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 4}
  adaptive: {min_limit: 2, tolerance: 1.5, window: 100ms, smoothing: 0.5}
  privacy: {routes: [/v1/embeddings], client_key_envs: [APP_KEY], patterns: ["###-##-####"]}
  retries: {budget_percent: 10, min_concurrent: 2}
)");
  const GatewayConfig& g = cfg.gateway;
  EXPECT_EQ(g.local.at(0).models, std::vector<std::string>{"llama3.1-8b"});
  EXPECT_EQ(g.cloud.at(0).ca_file, "/etc/ca.pem");
  EXPECT_DOUBLE_EQ(g.queue_timeout_ms, 250);
  EXPECT_DOUBLE_EQ(g.sensitive_queue_timeout_ms, 1000);
  EXPECT_DOUBLE_EQ(g.first_token_timeout_seconds, 2);
  EXPECT_TRUE(g.health.enabled);
  EXPECT_EQ(g.health.path, "/health");
  EXPECT_DOUBLE_EQ(g.health.interval_seconds, 2);
  EXPECT_DOUBLE_EQ(g.health.timeout_seconds, 0.5);
  EXPECT_EQ(g.health.unhealthy_threshold, 4);
  EXPECT_TRUE(g.adaptive.enabled);
  EXPECT_EQ(g.adaptive.min_limit, 2);
  EXPECT_DOUBLE_EQ(g.adaptive.window_seconds, 0.1);
  EXPECT_EQ(g.sensitive_routes, std::vector<std::string>{"/v1/embeddings"});
  EXPECT_EQ(g.sensitive_client_key_envs, std::vector<std::string>{"APP_KEY"});
  EXPECT_EQ(g.sensitive_patterns, std::vector<std::string>{"###-##-####"});
  EXPECT_DOUBLE_EQ(g.retry_budget_percent, 10);
  EXPECT_EQ(g.retry_min_concurrent, 2);
}

TEST(ConfigErrors, GatewayHealthAndAdaptiveValues) {
  Diagnostics d;
  auto cfg = load_config_text(R"(gateway:
  local:
    - {name: a, url: "http://10.0.0.2:8000"}
  health: {path: health, interval: 0s, unhealthy_treshold: 3}
  adaptive: {tolerance: 0.5, smoothing: 2}
)",
                              "gw.yaml", d);
  EXPECT_FALSE(cfg);
  std::string e = d.str();
  EXPECT_THAT(e, HasSubstr("gw.yaml:4:11: error: gateway.health.path: must start with '/'"));
  EXPECT_THAT(e, HasSubstr("gateway.health.interval: must be greater than 0"));
  EXPECT_THAT(e, HasSubstr("gateway.health.unhealthy_treshold"));
  EXPECT_THAT(e, HasSubstr("did you mean 'unhealthy_threshold'"));
  EXPECT_THAT(e, HasSubstr("gateway.adaptive.tolerance: must be at least 1"));
  EXPECT_THAT(e, HasSubstr("gateway.adaptive.smoothing: must be at most 1"));
}

class ConfigLocationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("hylab-cfg-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_ / "hylab");
    saved_xdg_ = env("XDG_CONFIG_HOME");
    saved_cfg_ = env("HYLAB_CONFIG");
    ::setenv("XDG_CONFIG_HOME", dir_.c_str(), 1);
    ::unsetenv("HYLAB_CONFIG");
  }
  void TearDown() override {
    restore("XDG_CONFIG_HOME", saved_xdg_);
    restore("HYLAB_CONFIG", saved_cfg_);
    std::filesystem::remove_all(dir_);
  }
  static std::optional<std::string> env(const char* n) {
    const char* v = std::getenv(n);
    return v ? std::optional<std::string>(v) : std::nullopt;
  }
  static void restore(const char* n, const std::optional<std::string>& v) {
    if (v) {
      ::setenv(n, v->c_str(), 1);
    } else {
      ::unsetenv(n);
    }
  }
  std::filesystem::path dir_;
  std::optional<std::string> saved_xdg_, saved_cfg_;
};

TEST_F(ConfigLocationTest, FlagThenEnvironmentThenDefaultFile) {
  EXPECT_FALSE(locate_config(std::nullopt));
  std::ofstream(dir_ / "hylab" / "hylab.yaml") << "lab: {}\n";
  EXPECT_EQ(locate_config(std::nullopt)->path, (dir_ / "hylab" / "hylab.yaml").string());
  ::setenv("HYLAB_CONFIG", "/from/env.yaml", 1);
  EXPECT_EQ(locate_config(std::nullopt)->path, "/from/env.yaml");
  EXPECT_EQ(locate_config(std::nullopt)->how, "$HYLAB_CONFIG");
  EXPECT_EQ(locate_config(std::string("/from/flag.yaml"))->path, "/from/flag.yaml");
}

// The storage: section (hybrid storage, `hylab data`).

TEST(Config, StorageDefaults) {
  Config cfg = testing::config_from("lab: {gpus: [{model: RTX3090}]}");
  const StorageConfig& st = cfg.storage;
  EXPECT_EQ(st.remote, "");
  EXPECT_EQ(st.endpoint_url, "");
  EXPECT_EQ(st.region, "");
  EXPECT_EQ(st.addressing, "path");
  EXPECT_EQ(st.profile, "");
  EXPECT_EQ(st.cache_dir, "");
  EXPECT_EQ(st.cache_max_size, 50 * kGiB);
  EXPECT_DOUBLE_EQ(st.cache_max_age_seconds, 0);
  EXPECT_DOUBLE_EQ(st.revalidate_after_seconds, 60);
  EXPECT_TRUE(st.sensitive.empty());
  EXPECT_TRUE(st.shareable.empty());
  EXPECT_EQ(st.parallel, 8);
  EXPECT_EQ(st.multipart_threshold, 64 * kMiB);
  EXPECT_EQ(st.part_size, 16 * kMiB);
  EXPECT_EQ(st.split_below, 256 * kMiB);
  // An empty section is the defaults too.
  Config empty = testing::config_from("storage:\n");
  EXPECT_EQ(empty.storage.cache_max_size, 50 * kGiB);
  EXPECT_EQ(empty.storage.addressing, "path");
}

TEST(Config, StorageEveryKey) {
  Config cfg = testing::config_from(R"(storage:
  remote: s3://lab-data/projects/x
  endpoint_url: http://127.0.0.1:9000
  region: eu-west-1
  addressing: virtual
  profile: lab
  cache_dir: /var/cache/hylab
  cache_max_size: 50GiB
  cache_max_age: 10m
  revalidate_after: 1h
  sensitive: [data/patients, "**/*.csv"]
  shareable: [data/patients/summary.csv]
  parallel: 16
  multipart_threshold: 128MiB
  part_size: 32MiB
  split_below: 64MiB
)");
  const StorageConfig& st = cfg.storage;
  EXPECT_EQ(st.remote, "s3://lab-data/projects/x");
  EXPECT_EQ(st.endpoint_url, "http://127.0.0.1:9000");
  EXPECT_EQ(st.region, "eu-west-1");
  EXPECT_EQ(st.addressing, "virtual");
  EXPECT_EQ(st.profile, "lab");
  EXPECT_EQ(st.cache_dir, "/var/cache/hylab");
  EXPECT_EQ(st.cache_max_size, 50 * kGiB);
  EXPECT_DOUBLE_EQ(st.cache_max_age_seconds, 600);
  EXPECT_DOUBLE_EQ(st.revalidate_after_seconds, 3600);
  EXPECT_EQ(st.sensitive, (std::vector<std::string>{"data/patients", "**/*.csv"}));
  EXPECT_EQ(st.shareable, std::vector<std::string>{"data/patients/summary.csv"});
  EXPECT_EQ(st.parallel, 16);
  EXPECT_EQ(st.multipart_threshold, 128 * kMiB);
  EXPECT_EQ(st.part_size, 32 * kMiB);
  EXPECT_EQ(st.split_below, 64 * kMiB);
}

TEST(Config, StorageOtherForms) {
  Config cfg = testing::config_from(R"(storage:
  remote: file:///srv/lab-objects
  endpoint_url: https://minio.lab.example:9000
  addressing: path
  cache_max_size: 2
  cache_max_age: 1d
  revalidate_after: 0
  part_size: 5MiB
  multipart_threshold: 8
  parallel: 1000
)");
  const StorageConfig& st = cfg.storage;
  EXPECT_EQ(st.remote, "file:///srv/lab-objects");
  EXPECT_EQ(st.endpoint_url, "https://minio.lab.example:9000");
  EXPECT_EQ(st.addressing, "path");
  EXPECT_EQ(st.cache_max_size, 2 * kGiB);  // a bare size is GiB
  EXPECT_DOUBLE_EQ(st.cache_max_age_seconds, 86400);
  EXPECT_DOUBLE_EQ(st.revalidate_after_seconds, 0);  // revalidate at every read
  EXPECT_EQ(st.part_size, 5 * kMiB);                 // S3's smallest part is allowed
  EXPECT_EQ(st.multipart_threshold, 8 * kMiB);       // a bare size is MiB
  EXPECT_EQ(st.parallel, 256);                       // capped
  EXPECT_EQ(testing::config_from("storage: {split_below: always}").storage.split_below,
            ~std::uint64_t{0});
  EXPECT_EQ(testing::config_from("storage: {split_below: 0}").storage.split_below, 0u);
  // One path needs no list.
  Config one = testing::config_from("storage: {sensitive: data/secret}");
  EXPECT_EQ(one.storage.sensitive, std::vector<std::string>{"data/secret"});
  Config secs = testing::config_from("storage: {revalidate_after: 30s, cache_max_size: 512MiB}");
  EXPECT_DOUBLE_EQ(secs.storage.revalidate_after_seconds, 30);
  EXPECT_EQ(secs.storage.cache_max_size, 512 * kMiB);
}

TEST(Config, StorageBaseDirIsTheConfigFolder) {
  Diagnostics d;
  auto cfg = load_config_text("storage: {sensitive: [data]}\n", "/etc/lab/hylab.yaml", d);
  ASSERT_TRUE(cfg) << d.str();
  EXPECT_EQ(cfg->storage.base_dir, "/etc/lab");
  auto root = load_config_text("storage: {}\n", "/hylab.yaml", d);
  ASSERT_TRUE(root) << d.str();
  EXPECT_EQ(root->storage.base_dir, "/");
  auto bare = load_config_text("storage: {}\n", "hylab.yaml", d);
  ASSERT_TRUE(bare) << d.str();
  EXPECT_EQ(bare->storage.base_dir, ".");
}

TEST(ConfigErrors, StorageValuesNameFileLineAndKey) {
  EXPECT_EQ(config_errors("storage:\n  remote: ftp://host/x\n"),
            "hylab.yaml:2:11: error: storage.remote: must be s3://BUCKET/PREFIX or "
            "file:///PATH, got 'ftp://host/x'\n");
  EXPECT_EQ(config_errors("storage: {remote: s3://}\n"),
            "hylab.yaml:1:19: error: storage.remote: has no bucket: 's3://'\n");
  EXPECT_THAT(config_errors("storage: {remote: s3:///prefix}\n"),
              HasSubstr("storage.remote: has no bucket: 's3:///prefix'"));
  // file: needs an absolute path (three slashes).
  EXPECT_THAT(config_errors("storage: {remote: file://relative/dir}\n"),
              HasSubstr("storage.remote: must be s3://BUCKET/PREFIX or file:///PATH"));
  EXPECT_THAT(config_errors("storage: {remote: /srv/objects}\n"),
              HasSubstr("storage.remote: must be s3://BUCKET/PREFIX or file:///PATH"));
  EXPECT_EQ(config_errors("storage:\n  endpoint_url: 127.0.0.1:9000\n"),
            "hylab.yaml:2:17: error: storage.endpoint_url: must start with http:// or https://, "
            "got '127.0.0.1:9000'\n");
  EXPECT_EQ(config_errors("storage:\n  addressing: vhost\n"),
            "hylab.yaml:2:15: error: storage.addressing: unknown value 'vhost'; expected one of "
            "path, virtual\n");
  EXPECT_EQ(config_errors("storage:\n  cache_max_size: 0\n"),
            "hylab.yaml:2:19: error: storage.cache_max_size: must be more than 0\n");
  EXPECT_THAT(config_errors("storage: {cache_max_size: 0GiB}\n"),
              HasSubstr("storage.cache_max_size: must be more than 0"));
  EXPECT_EQ(config_errors("storage:\n  part_size: 4MiB\n"),
            "hylab.yaml:2:14: error: storage.part_size: must be between 5MiB and 5GiB (S3's part "
            "limits)\n");
  EXPECT_THAT(config_errors("storage: {part_size: 6GiB}\n"),
              HasSubstr("storage.part_size: must be between 5MiB and 5GiB"));
  EXPECT_EQ(config_errors("storage:\n  split_below: fast\n"),
            "hylab.yaml:2:16: error: storage.split_below: expected bytes a second such as "
            "256MiB, 0 (one stream) or always\n");
  EXPECT_THAT(config_errors("storage: {multipart_threshold: 1MiB}\n"),
              HasSubstr("storage.multipart_threshold: must be at least 5MiB"));
  EXPECT_THAT(config_errors("storage: {parallel: 0}\n"),
              HasSubstr("storage.parallel: must be at least 1, got 0"));
  {
    Diagnostics d;  // 0 is "no maximum age", the default
    auto cfg = load_config_text("storage: {cache_max_age: 0}\n", "hylab.yaml", d);
    ASSERT_TRUE(cfg.has_value()) << d.str();
    EXPECT_DOUBLE_EQ(cfg->storage.cache_max_age_seconds, 0);
  }
  EXPECT_THAT(config_errors("storage: {cache_max_age: -1h}\n"),
              HasSubstr("storage.cache_max_age:"));
  EXPECT_THAT(config_errors("storage: {revalidate_after: soon}\n"),
              HasSubstr("storage.revalidate_after: expected a duration"));
  EXPECT_THAT(config_errors("storage: {cache_max_size: lots}\n"),
              HasSubstr("storage.cache_max_size:"));
  EXPECT_THAT(config_errors("storage: {sensitive: {data: secret}}\n"),
              HasSubstr("storage.sensitive: expected a list of strings"));
}

TEST(ConfigErrors, StorageUnknownKeySuggestsTheRightOne) {
  EXPECT_EQ(config_errors("storage:\n  cache_max_sise: 10GiB\n"),
            "hylab.yaml:2:3: error: storage.cache_max_sise: unknown key (did you mean "
            "'cache_max_size'?)\n");
  EXPECT_THAT(config_errors("storage: {endpoint_ulr: http://x}\n"),
              HasSubstr("storage.endpoint_ulr: unknown key (did you mean 'endpoint_url'?)"));
  // Too far from every key: the known ones are listed instead.
  EXPECT_THAT(config_errors("storage: {endpoint: http://x}\n"),
              HasSubstr("storage.endpoint: unknown key; known keys here: addressing, cache_dir"));
  EXPECT_THAT(config_errors("storge: {}\n"),
              HasSubstr("hylab.yaml:1:1: error: storge: unknown key (did you mean 'storage'?)"));
}

TEST(ConfigErrors, StorageSeveralAtOnce) {
  Diagnostics d;
  auto cfg = load_config_text(R"(storage:
  remote: s3://
  endpoint_url: minio:9000
  addressing: dns
  cache_max_size: 0
  part_size: 1MiB
  shareble: [x]
)",
                              "st.yaml", d);
  EXPECT_FALSE(cfg);
  std::string e = d.str();
  EXPECT_THAT(e, HasSubstr("st.yaml:2:11: error: storage.remote: has no bucket"));
  EXPECT_THAT(e, HasSubstr("st.yaml:3:17: error: storage.endpoint_url: must start with http://"));
  EXPECT_THAT(e, HasSubstr("st.yaml:4:15: error: storage.addressing: unknown value 'dns'"));
  EXPECT_THAT(e, HasSubstr("st.yaml:5:19: error: storage.cache_max_size: must be more than 0"));
  EXPECT_THAT(e, HasSubstr("st.yaml:6:14: error: storage.part_size: must be between 5MiB"));
  EXPECT_THAT(e, HasSubstr("st.yaml:7:3: error: storage.shareble: unknown key (did you mean "
                           "'shareable'?)"));
  EXPECT_EQ(d.error_count(), 6u);
}

TEST(Config, CloudTargets) {
  Diagnostics d;
  auto cfg = load_config_text(R"(clouds:
  - name: aws-pc
    kind: slurm
    partition: gpu
    spot_partition: gpu-spot
    instance: p4d.24xlarge
    ssh: headnode
    env: {SLURM_CONF: /opt/slurm/etc/slurm.conf}
  - name: onprem
    partition: batch
)",
                              "hylab.yaml", d);
  ASSERT_TRUE(cfg.has_value()) << d.str();
  ASSERT_EQ(cfg->clouds.size(), 2u);
  const CloudTarget& t = cfg->clouds[0];
  EXPECT_EQ(t.name, "aws-pc");
  EXPECT_EQ(t.kind, "slurm");
  EXPECT_EQ(t.partition, "gpu");
  EXPECT_EQ(t.spot_partition, "gpu-spot");
  EXPECT_EQ(t.instance, "p4d.24xlarge");
  EXPECT_EQ(t.ssh, "headnode");
  EXPECT_EQ(t.env.at("SLURM_CONF"), "/opt/slurm/etc/slurm.conf");
  EXPECT_EQ(cfg->clouds[1].kind, "slurm");
  EXPECT_TRUE(cfg->clouds[1].spot_partition.empty());
}

TEST(ConfigErrors, CloudTargetsNameFileLineAndKey) {
  EXPECT_THAT(config_errors("clouds:\n  - {partition: gpu}\n"),
              HasSubstr("hylab.yaml:2:5: error: clouds[0].name: is required"));
  EXPECT_THAT(config_errors("clouds:\n  - {name: a}\n"),
              HasSubstr("clouds[0].partition: is required"));
  EXPECT_THAT(config_errors("clouds:\n  - {name: a, partition: p, kind: k8s}\n"),
              HasSubstr("clouds[0].kind:"));
  EXPECT_THAT(config_errors("clouds:\n  - {name: a, partition: p, instance: nope.large}\n"),
              HasSubstr("clouds[0].instance: is not in the catalog: 'nope.large'"));
  EXPECT_THAT(config_errors("clouds:\n  - {name: a, partition: p}\n  - {name: a, partition: q}\n"),
              HasSubstr("clouds[1].name: repeats the name 'a'"));
  EXPECT_THAT(config_errors("clouds:\n  - {name: a, partition: p, partiton: q}\n"),
              HasSubstr("did you mean 'partition'?"));
}

}  // namespace
}  // namespace hylab
