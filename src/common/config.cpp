#include "common/config.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "common/catalog_yaml.h"
#include "common/text.h"
#include "common/yaml_reader.h"

namespace hylab {

int Lab::gpu_count() const {
  int n = 0;
  for (const auto& g : gpus) n += g.count;
  return n;
}

std::uint64_t Lab::gpu_memory_bytes() const {
  std::uint64_t n = 0;
  for (const auto& g : gpus) n += g.memory_bytes * static_cast<std::uint64_t>(g.count);
  return n;
}

std::string default_config_path() {
  const char* xdg = std::getenv("XDG_CONFIG_HOME");
  if (xdg && *xdg) return std::string(xdg) + "/hylab/hylab.yaml";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.config/hylab/hylab.yaml";
}

std::string default_state_dir() {
  const char* xdg = std::getenv("XDG_DATA_HOME");
  if (xdg && *xdg) return std::string(xdg) + "/hylab";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.local/share/hylab";
}

std::optional<ConfigLocation> locate_config(const std::optional<std::string>& flag) {
  if (flag) return ConfigLocation{*flag, "--config"};
  if (const char* env = std::getenv("HYLAB_CONFIG"); env && *env) {
    return ConfigLocation{env, "$HYLAB_CONFIG"};
  }
  std::string def = default_config_path();
  struct stat st {};
  if (::stat(def.c_str(), &st) == 0) return ConfigLocation{def, "the default location"};
  return std::nullopt;
}

Result<std::string> read_text_file(const std::string& path, std::size_t max_bytes) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return Error{Errc::kNotFound, fmt::format("{}: cannot open: {}", path, std::strerror(errno))};
  }
  if (S_ISDIR(st.st_mode))
    return Error{Errc::kIo, fmt::format("{}: is a directory, not a file", path)};
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{Errc::kIo, fmt::format("{}: cannot open: {}", path, std::strerror(errno))};
  std::string data;
  char buf[65536];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    data.append(buf, static_cast<std::size_t>(in.gcount()));
    if (data.size() > max_bytes) {
      return Error{Errc::kInvalidInput,
                   fmt::format("{}: file is over the limit of {} bytes", path, max_bytes)};
    }
  }
  if (in.bad()) return Error{Errc::kIo, fmt::format("{}: read error", path)};
  return data;
}

namespace {

void read_lab_gpu(const yaml::Where& w, const YAML::Node& item, const std::string& p,
                  const Catalog& catalog, Lab& lab) {
  yaml::MapReader m(w, item, p);
  if (!m.ok()) return;
  auto model_node = m.take("model");
  auto count = m.integer("count", 1);
  auto memory = m.bytes("memory", kGB);
  m.finish();
  if (!model_node) {
    yaml::error_at(w, item, p + ".model", "missing: which GPU model (e.g. RTX4090)?");
    return;
  }
  auto model_name = yaml::as_string(w, *model_node, p + ".model");
  if (!model_name) return;
  const GpuModel* model = catalog.find_gpu(*model_name);
  if (!model) {
    std::string msg = fmt::format("unknown GPU model {}", quote(*model_name));
    if (auto near = did_you_mean(*model_name, catalog.gpu_names())) {
      msg += fmt::format(" (did you mean '{}'?)", *near);
    } else {
      msg += "; add it under catalog.gpus with its memory and tflops";
    }
    yaml::error_at(w, *model_node, p + ".model", msg);
    return;
  }
  lab.gpus.push_back(LabGpu{model->name, static_cast<int>(count.value_or(1)),
                            memory.value_or(model->memory_bytes), model->tflops});
}

void read_lab_gpus(const yaml::Where& w, const YAML::Node& node, const std::string& path,
                   const Catalog& catalog, Lab& lab) {
  yaml::for_each_item(w, node, path, "GPUs (model, count)",
                      [&](const YAML::Node& item, const std::string& p) {
                        read_lab_gpu(w, item, p, catalog, lab);
                      });
}

void read_lab(const yaml::Where& w, const YAML::Node& node, const Catalog& catalog, Lab& lab) {
  yaml::MapReader m(w, node, "lab");
  if (!m.ok()) return;
  if (auto v = m.string("name")) lab.name = *v;
  if (auto g = m.take("gpus")) read_lab_gpus(w, *g, "lab.gpus", catalog, lab);
  if (auto v = m.integer("cpus", 1)) lab.cpus = static_cast<int>(*v);
  if (auto v = m.bytes("memory", kGiB)) lab.memory_bytes = *v;
  if (auto v = m.bytes("disk", kGB)) lab.disk_bytes = *v;
  auto hardware = m.number("hardware_usd", 0);
  if (auto v = m.number("service_life_months", 0, true)) lab.service_life_months = *v;
  std::optional<double> busy;
  if (auto p = m.take("power")) {
    yaml::MapReader pm(w, *p, "lab.power");
    if (pm.ok()) {
      busy = pm.number("busy_watts", 0);
      if (auto v = pm.number("idle_watts", 0)) lab.idle_watts = *v;
      pm.finish();
    }
  }
  if (auto v = m.number("electricity_usd_per_kwh", 0)) lab.electricity_usd_per_kwh = *v;
  if (auto v = m.string("timezone")) lab.timezone = *v;
  m.finish();

  // Left out, the price and power of the whole lab default to those of its GPU cards.
  double card_price = 0;
  double card_watts = 0;
  for (const auto& g : lab.gpus) {
    const GpuModel* model = catalog.find_gpu(g.model);
    card_price += model->price_usd.value_or(0) * g.count;
    card_watts += model->watts.value_or(0) * g.count;
  }
  lab.hardware_usd = hardware.value_or(card_price);
  lab.busy_watts = busy.value_or(card_watts);
  if (lab.idle_watts > lab.busy_watts) {
    yaml::error_at(w, node, "lab.power.idle_watts",
                   fmt::format("idle power ({:g} W) is above busy power ({:g} W)", lab.idle_watts,
                               lab.busy_watts));
  }
}

void read_policy(const yaml::Where& w, const YAML::Node& node, Policy& policy) {
  yaml::MapReader m(w, node, "policy");
  if (!m.ok()) return;
  if (auto v = m.number("breakeven_limit_months", 0, true)) policy.breakeven_limit_months = *v;
  if (auto v = m.bytes("large_data_threshold", kGB)) policy.large_data_bytes = *v;
  if (auto v = m.hours("max_local_wait")) policy.max_local_wait_hours = *v;
  if (auto v = m.integer("max_preemptions", 0)) policy.max_preemptions = static_cast<int>(*v);
  if (auto v = m.number("monthly_cloud_budget_usd", 0)) policy.monthly_cloud_budget_usd = *v;
  if (auto n = m.take("large_job_hours")) {
    if (auto v = yaml::as_hours(w, *n, "policy.large_job_hours")) {
      if (*v <= 0) {
        yaml::error_at(w, *n, "policy.large_job_hours", "must be greater than 0");
      } else {
        policy.large_job_hours = *v;
      }
    }
  }
  m.finish();
}

// "~/x" -> $HOME/x; a relative path is relative to the config file's folder.
std::string resolve_path(const std::string& p, const std::string& config_file) {
  if (p.rfind("~/", 0) == 0) {
    const char* home = std::getenv("HOME");
    return std::string(home ? home : "") + p.substr(1);
  }
  if (!p.empty() && p[0] == '/') return p;
  auto slash = config_file.find_last_of('/');
  return slash == std::string::npos ? p : config_file.substr(0, slash + 1) + p;
}

std::optional<double> positive_seconds(yaml::MapReader& m, std::string_view key) {
  auto node = m.take(key);
  if (!node || node->IsNull()) return std::nullopt;
  auto h = yaml::as_hours(m.where(), *node, m.key_path(key));
  if (!h) return std::nullopt;
  if (*h <= 0) {
    yaml::error_at(m.where(), *node, m.key_path(key), "must be greater than 0");
    return std::nullopt;
  }
  return *h * 3600;
}

std::optional<std::string> host_port(const yaml::Where& w, const YAML::Node& n,
                                     const std::string& key) {
  auto v = yaml::as_string(w, n, key);
  if (!v) return std::nullopt;
  auto colon = v->rfind(':');
  bool ok = colon != std::string::npos && colon > 0 && colon + 1 < v->size() &&
            v->size() - colon <= 6 &&
            v->find_first_not_of("0123456789", colon + 1) == std::string::npos &&
            std::stoi(v->substr(colon + 1)) <= 65535;
  if (!ok) {
    yaml::error_at(w, n, key, "expected host:port such as 127.0.0.1:8400, got " + quote(*v));
    return std::nullopt;
  }
  return v;
}

void read_server(const yaml::Where& w, const YAML::Node& node, ServerConfig& s) {
  yaml::MapReader m(w, node, "server");
  if (!m.ok()) return;
  if (auto n = m.take("listen"); n && !n->IsNull()) {
    if (auto v = host_port(w, *n, "server.listen")) s.listen = *v;
  }
  if (auto v = m.string("state_dir")) s.state_dir = resolve_path(*v, w.file);
  if (auto t = m.take("tls")) {
    yaml::MapReader tm(w, *t, "server.tls");
    if (tm.ok()) {
      auto cert = tm.string("cert");
      auto key = tm.string("key");
      tm.finish();
      if (cert.has_value() != key.has_value()) {
        yaml::error_at(w, *t, "server.tls", "give both cert and key (PEM files)");
      } else if (cert) {
        s.tls_cert = resolve_path(*cert, w.file);
        s.tls_key = resolve_path(*key, w.file);
      }
    }
  }
  if (auto v = m.bytes("max_body", kMiB)) s.max_body_bytes = *v;
  if (auto v = m.bytes("log_max_size", kMiB)) s.log_max_bytes = *v;
  if (auto v = m.integer("max_connections", 1)) s.max_connections = static_cast<std::uint64_t>(*v);
  if (auto n = m.take("cancel_grace"); n && !n->IsNull()) {
    if (auto h = yaml::as_hours(w, *n, "server.cancel_grace")) s.cancel_grace_seconds = *h * 3600;
  }
  if (auto t = m.take("timeouts")) {
    yaml::MapReader tm(w, *t, "server.timeouts");
    if (tm.ok()) {
      if (auto v = positive_seconds(tm, "read")) s.read_timeout_seconds = *v;
      if (auto v = positive_seconds(tm, "write")) s.write_timeout_seconds = *v;
      if (auto v = positive_seconds(tm, "idle")) s.idle_timeout_seconds = *v;
      tm.finish();
    }
  }
  m.finish();
}

void read_endpoint(const yaml::Where& w, const YAML::Node& item, const std::string& p, bool cloud,
                   std::vector<GatewayEndpoint>& out) {
  yaml::MapReader m(w, item, p);
  if (!m.ok()) return;
  GatewayEndpoint e;
  e.max_inflight = cloud ? 256 : 8;
  auto name = m.string("name");
  auto url_node = m.take("url");
  if (auto v = m.integer("max_inflight", 1)) e.max_inflight = static_cast<int>(*v);
  if (auto v = m.integer("weight", 1)) e.weight = static_cast<int>(*v);
  if (auto v = m.string_list("models")) e.models = *v;
  if (cloud) {
    if (auto v = m.string("api_key_env")) e.api_key_env = *v;
    if (auto v = m.number("usd_per_1k_input", 0)) e.usd_per_1k_input = *v;
    if (auto v = m.number("usd_per_1k_output", 0)) e.usd_per_1k_output = *v;
    if (auto v = m.string("ca_file")) e.ca_file = *v;
  } else {
    m.known({"api_key_env", "usd_per_1k_input", "usd_per_1k_output", "ca_file"});
  }
  m.finish();
  if (!name) {
    yaml::error_at(w, item, p + ".name", "missing: every endpoint needs a name");
    return;
  }
  e.name = *name;
  if (!url_node) {
    yaml::error_at(w, item, p + ".url",
                   "missing: every endpoint needs a url such as http://127.0.0.1:8000");
    return;
  }
  auto url = yaml::as_string(w, *url_node, p + ".url");
  if (!url) return;
  bool http = url->rfind("http://", 0) == 0;
  bool https = url->rfind("https://", 0) == 0;
  if (!http && !https) {
    yaml::error_at(w, *url_node, p + ".url",
                   "expected an http:// or https:// URL, got " + quote(*url));
    return;
  }
  if (https && !cloud) {
    yaml::error_at(w, *url_node, p + ".url", "local endpoints are plain http:// inside the lab");
    return;
  }
  e.url = *url;
  for (const auto& other : out) {
    if (other.name == e.name)
      yaml::error_at(w, item, p + ".name", fmt::format("endpoint '{}' is listed twice", e.name));
  }
  out.push_back(std::move(e));
}

void read_endpoints(const yaml::Where& w, const YAML::Node& node, const std::string& path,
                    bool cloud, std::vector<GatewayEndpoint>& out) {
  yaml::for_each_item(
      w, node, path, "endpoints (name, url, max_inflight, weight)",
      [&](const YAML::Node& item, const std::string& p) { read_endpoint(w, item, p, cloud, out); });
}

void read_gateway(const yaml::Where& w, const YAML::Node& node, GatewayConfig& g) {
  yaml::MapReader m(w, node, "gateway");
  if (!m.ok()) return;
  g.present = true;
  if (auto n = m.take("listen")) {
    if (auto v = host_port(w, *n, "gateway.listen")) g.listen = *v;
  }
  if (auto n = m.take("admin")) {
    if (auto v = host_port(w, *n, "gateway.admin")) g.admin = *v;
  }
  if (auto v = m.integer("threads", 0)) g.threads = static_cast<int>(*v);
  if (auto v = m.integer("busy_poll_us", 0)) g.busy_poll_us = static_cast<int>(*v);
  if (auto n = m.take("local")) read_endpoints(w, *n, "gateway.local", false, g.local);
  if (auto n = m.take("cloud")) read_endpoints(w, *n, "gateway.cloud", true, g.cloud);
  if (auto n = m.take("models"); n && !n->IsNull()) {
    if (auto v = yaml::as_string_map(w, *n, "gateway.models")) {
      for (const auto& [k, val] : *v) g.models.emplace_back(k, val.value_or(""));
    }
  }
  if (auto v = m.string("sensitive_header")) g.sensitive_header = *v;
  if (auto v = m.number("queue_timeout_ms", 0)) g.queue_timeout_ms = *v;
  if (auto v = m.number("sensitive_queue_timeout_ms", 0)) g.sensitive_queue_timeout_ms = *v;
  if (auto t = m.take("privacy")) {
    yaml::MapReader pm(w, *t, "gateway.privacy");
    if (pm.ok()) {
      if (auto v = pm.string_list("routes")) g.sensitive_routes = *v;
      if (auto v = pm.string_list("client_key_envs")) g.sensitive_client_key_envs = *v;
      if (auto v = pm.string_list("patterns")) g.sensitive_patterns = *v;
      pm.finish();
    }
  }
  if (auto t = m.take("retries")) {
    yaml::MapReader rm(w, *t, "gateway.retries");
    if (rm.ok()) {
      if (auto v = rm.number("budget_percent", 0)) g.retry_budget_percent = *v;
      if (auto v = rm.integer("min_concurrent", 0)) g.retry_min_concurrent = static_cast<int>(*v);
      rm.finish();
    }
  }
  if (auto t = m.take("health"); t && !t->IsNull()) {
    yaml::MapReader hm(w, *t, "gateway.health");
    if (hm.ok()) {
      g.health.enabled = true;
      if (auto v = hm.boolean("enabled")) g.health.enabled = *v;
      if (auto v = hm.string("path")) {
        if (v->empty() || v->front() != '/') {
          yaml::error_at(w, *t, "gateway.health.path", "must start with '/', got " + quote(*v));
        }
        g.health.path = *v;
      }
      if (auto v = positive_seconds(hm, "interval")) g.health.interval_seconds = *v;
      if (auto v = positive_seconds(hm, "timeout")) g.health.timeout_seconds = *v;
      if (auto v = hm.integer("healthy_threshold", 1))
        g.health.healthy_threshold = static_cast<int>(*v);
      if (auto v = hm.integer("unhealthy_threshold", 1)) {
        g.health.unhealthy_threshold = static_cast<int>(*v);
      }
      hm.finish();
    }
  }
  if (auto t = m.take("adaptive"); t && !t->IsNull()) {
    yaml::MapReader am(w, *t, "gateway.adaptive");
    if (am.ok()) {
      g.adaptive.enabled = true;
      if (auto v = am.boolean("enabled")) g.adaptive.enabled = *v;
      if (auto v = am.integer("min_limit", 1)) g.adaptive.min_limit = static_cast<int>(*v);
      if (auto v = am.number("tolerance", 1)) g.adaptive.tolerance = *v;
      if (auto v = positive_seconds(am, "window")) g.adaptive.window_seconds = *v;
      if (auto v = am.number("smoothing", 0, true)) {
        if (*v > 1) {
          yaml::error_at(w, *t, "gateway.adaptive.smoothing", "must be at most 1");
        }
        g.adaptive.smoothing = std::min(*v, 1.0);
      }
      am.finish();
    }
  }
  if (auto v = m.number("daily_cloud_budget_usd", 0)) g.daily_cloud_budget_usd = *v;
  if (auto t = m.take("timeouts")) {
    yaml::MapReader tm(w, *t, "gateway.timeouts");
    if (tm.ok()) {
      if (auto v = positive_seconds(tm, "connect")) g.connect_timeout_seconds = *v;
      if (auto v = positive_seconds(tm, "response")) g.response_timeout_seconds = *v;
      if (auto v = positive_seconds(tm, "client")) g.client_timeout_seconds = *v;
      if (auto v = positive_seconds(tm, "idle")) g.idle_timeout_seconds = *v;
      if (auto v = positive_seconds(tm, "first_token")) g.first_token_timeout_seconds = *v;
      if (auto v = positive_seconds(tm, "drain")) g.drain_timeout_seconds = *v;
      tm.finish();
    }
  }
  if (auto t = m.take("limits")) {
    yaml::MapReader lm(w, *t, "gateway.limits");
    if (lm.ok()) {
      if (auto v = lm.bytes("max_header", kKiB)) g.max_header_bytes = *v;
      if (auto v = lm.bytes("max_body", kMiB)) g.max_body_bytes = *v;
      if (auto v = lm.integer("max_connections", 1))
        g.max_connections = static_cast<std::uint64_t>(*v);
      lm.finish();
    }
  }
  m.finish();
  bool listed = false;
  for (const char* k : {"local", "cloud"}) {
    if (node.IsMap() && node[k] && node[k].IsSequence() && node[k].size() > 0) listed = true;
  }
  if (g.local.empty() && g.cloud.empty() && !listed) {
    yaml::error_at(w, node, "gateway",
                   "no endpoints: give at least one under gateway.local or gateway.cloud");
  }
}

void read_clouds(const yaml::Where& w, const YAML::Node& node, const Catalog& catalog,
                 std::vector<CloudTarget>& out) {
  yaml::for_each_item(
      w, node, "clouds", "cloud targets (name, kind, partition, ...)",
      [&](const YAML::Node& item, const std::string& p) {
        yaml::MapReader m(w, item, p);
        if (!m.ok()) return;
        CloudTarget t;
        if (auto v = m.string("name")) t.name = *v;
        if (t.name.empty()) yaml::error_at(w, item, p + ".name", "is required");
        for (const auto& other : out) {
          if (!t.name.empty() && other.name == t.name)
            yaml::error_at(w, item, p + ".name", "repeats the name " + quote(t.name));
        }
        if (auto v = m.choice("kind", {"slurm"})) t.kind = *v;
        if (auto v = m.string("partition")) t.partition = *v;
        if (auto v = m.string("spot_partition")) t.spot_partition = *v;
        if (auto n = m.take("instance")) {
          if (auto v = yaml::as_string(w, *n, p + ".instance")) {
            if (const auto* inst = catalog.find_instance(*v)) {
              t.instance = inst->name;
            } else {
              yaml::error_at(w, *n, p + ".instance",
                             "is not in the catalog: " + quote(*v) +
                                 " (add it under catalog.instances to price the target)");
            }
          }
        }
        // Where it is, for jobs pinned to a cloud or region; the provider defaults to
        // its instance's.
        if (auto v = m.string("provider")) {
          t.provider = to_lower(trim(*v));
          if (t.provider == "k8s") t.provider = "kubernetes";
        } else if (const auto* inst = catalog.find_instance(t.instance)) {
          t.provider = inst->provider;
        }
        if (auto v = m.string("region")) t.region = trim(*v);
        if (auto v = m.string("ssh")) t.ssh = *v;
        if (auto n = m.take("env"); n && !n->IsNull()) {
          if (auto v = yaml::as_string_map(w, *n, p + ".env")) {
            for (const auto& [k, val] : *v) t.env[k] = val.value_or("");
          }
        }
        m.finish();
        if (t.partition.empty()) yaml::error_at(w, item, p + ".partition", "is required");
        out.push_back(std::move(t));
      });
}

void read_storage(const yaml::Where& w, const YAML::Node& node, StorageConfig& st) {
  yaml::MapReader m(w, node, "storage");
  if (!m.ok()) return;
  if (auto n = m.take("remote")) {
    if (auto v = yaml::as_string(w, *n, "storage.remote")) {
      if (v->rfind("s3://", 0) != 0 && v->rfind("file:///", 0) != 0) {
        yaml::error_at(w, *n, "storage.remote",
                       "must be s3://BUCKET/PREFIX or file:///PATH, got " + quote(*v));
      } else if (v->rfind("s3://", 0) == 0 && (v->size() == 5 || (*v)[5] == '/')) {
        yaml::error_at(w, *n, "storage.remote", "has no bucket: " + quote(*v));
      } else {
        st.remote = *v;
      }
    }
  }
  if (auto n = m.take("endpoint_url")) {
    if (auto v = yaml::as_string(w, *n, "storage.endpoint_url")) {
      if (v->rfind("http://", 0) != 0 && v->rfind("https://", 0) != 0) {
        yaml::error_at(w, *n, "storage.endpoint_url",
                       "must start with http:// or https://, got " + quote(*v));
      } else {
        st.endpoint_url = *v;
      }
    }
  }
  if (auto v = m.string("region")) st.region = *v;
  if (auto v = m.choice("addressing", {"path", "virtual"})) st.addressing = *v;
  if (auto v = m.string("profile")) st.profile = *v;
  if (auto v = m.string("cache_dir")) st.cache_dir = *v;
  if (auto n = m.take("cache_max_size")) {
    if (auto v = yaml::as_bytes(w, *n, "storage.cache_max_size", kGiB)) {
      if (*v == 0) {
        yaml::error_at(w, *n, "storage.cache_max_size", "must be more than 0");
      } else {
        st.cache_max_size = *v;
      }
    }
  }
  if (auto n = m.take("cache_max_age")) {  // 0: no maximum age
    if (auto h = yaml::as_hours(w, *n, "storage.cache_max_age"))
      st.cache_max_age_seconds = *h * 3600;
  }
  if (auto n = m.take("revalidate_after")) {
    if (auto h = yaml::as_hours(w, *n, "storage.revalidate_after"))
      st.revalidate_after_seconds = *h * 3600;
  }
  if (auto v = m.string_list("sensitive")) st.sensitive = *v;
  if (auto v = m.string_list("shareable")) st.shareable = *v;
  if (auto v = m.integer("parallel", 1)) st.parallel = static_cast<int>(std::min(*v, 256LL));
  if (auto n = m.take("multipart_threshold")) {
    if (auto v = yaml::as_bytes(w, *n, "storage.multipart_threshold", kMiB)) {
      if (*v < (5ULL << 20)) {
        yaml::error_at(w, *n, "storage.multipart_threshold",
                       "must be at least 5MiB (S3's smallest part)");
      } else {
        st.multipart_threshold = *v;
      }
    }
  }
  if (auto n = m.take("part_size")) {
    if (auto v = yaml::as_bytes(w, *n, "storage.part_size", kMiB)) {
      if (*v < (5ULL << 20) || *v > (5ULL << 30)) {
        yaml::error_at(w, *n, "storage.part_size",
                       "must be between 5MiB and 5GiB (S3's part limits)");
      } else {
        st.part_size = *v;
      }
    }
  }
  if (auto n = m.take("split_below")) {  // a rate: bytes a second, or "always"
    std::string text = n->IsScalar() ? n->Scalar() : "";
    auto v = parse_bytes(text, kMiB);
    if (text == "always") {
      st.split_below = ~std::uint64_t{0};
    } else if (v) {
      st.split_below = *v;
    } else {
      yaml::error_at(w, *n, "storage.split_below",
                     "expected bytes a second such as 256MiB, 0 (one stream) or always");
    }
  }
  m.finish();
}

void read_schedules(const yaml::Where& w, const YAML::Node& node, const std::string& base_dir,
                    const Catalog& catalog, std::vector<ScheduleSpec>& out) {
  yaml::for_each_item(
      w, node, "schedules", "schedules (name, cron, job, ...)",
      [&](const YAML::Node& item, const std::string& p) {
        auto s = read_schedule(item, ScheduleReadContext{w.file, p, base_dir, catalog}, w.diag);
        if (!s) return;
        for (const auto& other : out) {
          if (other.name == s->name) {
            yaml::error_at(w, item["name"], p + ".name",
                           fmt::format("a second schedule named '{}' (names are unique)", s->name));
            return;
          }
        }
        out.push_back(std::move(*s));
      });
}

}  // namespace

std::optional<Config> load_config_text(std::string_view text, const std::string& file,
                                       Diagnostics& diag) {
  std::size_t errors_before = diag.error_count();
  auto doc = yaml::parse(text, file, diag);
  if (!doc) return std::nullopt;
  yaml::Where w{file, diag};
  Config cfg;
  cfg.source = file;
  yaml::MapReader top(w, *doc, "");
  if (!top.ok()) return std::nullopt;
  // The catalog first: lab GPUs may name models the config adds.
  if (auto c = top.take("catalog")) read_catalog(w, *c, "catalog", cfg.catalog, true);
  if (auto lab = top.take("lab"); lab && !lab->IsNull()) {
    cfg.has_lab = true;
    read_lab(w, *lab, cfg.catalog, cfg.lab);
  }
  if (auto p = top.take("policy")) read_policy(w, *p, cfg.policy);
  if (auto sv = top.take("server")) read_server(w, *sv, cfg.server);
  if (auto gw = top.take("gateway"); gw && !gw->IsNull()) read_gateway(w, *gw, cfg.gateway);
  if (auto st = top.take("storage"); st && !st->IsNull()) read_storage(w, *st, cfg.storage);
  if (auto cl = top.take("clouds"); cl && !cl->IsNull())
    read_clouds(w, *cl, cfg.catalog, cfg.clouds);
  std::string base_dir;
  {
    auto slash = file.rfind('/');
    base_dir = slash == std::string::npos ? "." : file.substr(0, slash);
    if (base_dir.empty()) base_dir = "/";
  }
  if (auto sc = top.take("schedules"); sc && !sc->IsNull())
    read_schedules(w, *sc, base_dir, cfg.catalog, cfg.schedules);
  {
    auto slash = file.rfind('/');
    cfg.storage.base_dir = slash == std::string::npos ? "." : file.substr(0, slash);
    if (cfg.storage.base_dir.empty()) cfg.storage.base_dir = "/";
    // A relative cache folder is relative to the config file, as the sensitive paths are.
    const std::string& dir = cfg.storage.cache_dir;
    if (!dir.empty() && dir.front() != '/' && dir.front() != '~')
      cfg.storage.cache_dir = cfg.storage.base_dir + "/" + dir;
  }
  top.finish();
  if (diag.error_count() > errors_before) return std::nullopt;
  return cfg;
}

std::optional<Config> load_config_file(const std::string& path, Diagnostics& diag) {
  auto text = read_text_file(path, yaml::kMaxDocumentBytes);
  if (!text) {
    diag.error(path, 0, 0, "", text.error().message.substr(path.size() + 2));
    return std::nullopt;
  }
  return load_config_text(*text, path, diag);
}

}  // namespace hylab
