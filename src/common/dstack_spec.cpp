// dstack's task and service files, where they map cleanly (see dstack_spec.h).
#include "common/dstack_spec.h"

#include <fmt/format.h>

#include <cctype>
#include <optional>

#include "common/text.h"
#include "common/units.h"

namespace hylab::detail {

namespace {

// "1..8", "1..", "..8", "4": the lower bound (1 when open below) and whether it is a range.
struct Range {
  std::string low, high;
  bool range = false;
};

Range split_range(const std::string& text) {
  auto dots = text.find("..");
  if (dots == std::string::npos) return {trim(text), trim(text), false};
  return {trim(text.substr(0, dots)), trim(text.substr(dots + 2)), true};
}

bool is_count(const std::string& t) {
  return !t.empty() && std::all_of(t.begin(), t.end(), [](char c) {
    return std::isdigit(static_cast<unsigned char>(c)) || c == '.';
  });
}

bool is_memory(const std::string& t) {
  std::string l = to_lower(t);
  return !t.empty() && std::isdigit(static_cast<unsigned char>(t[0])) &&
         (l.find("gb") != std::string::npos || l.find("mb") != std::string::npos ||
          l.find("tb") != std::string::npos);
}

class GpuReader {
 public:
  GpuReader(const yaml::Where& w, const YAML::Node& at, const Catalog& catalog)
      : w_(w), at_(at), catalog_(catalog) {}

  // "A100:2", "A100:40GB:2", "24GB", "24GB..", "16GB..24GB", "1..8", "2", "tpu-v5litepod-8",
  // "A10G,A100:1..2", "nvidia:24GB:2".
  void text(const std::string& spec) {
    std::size_t from = 0;
    while (from <= spec.size()) {
      auto colon = spec.find(':', from);
      std::string part =
          trim(spec.substr(from, colon == std::string::npos ? std::string::npos : colon - from));
      token(part);
      if (colon == std::string::npos) break;
      from = colon + 1;
    }
  }

  // {name: [A100, H100], memory: 24GB.., count: 1..}
  void map(const YAML::Node& m) {
    for (const auto& kv : m) {
      std::string k = kv.first.Scalar();
      if (k == "name") {
        if (kv.second.IsSequence()) {
          for (const auto& n : kv.second) names_.push_back(n.Scalar());
        } else {
          for (const auto& n : split(kv.second.Scalar())) names_.push_back(n);
        }
      } else if (k == "count") {
        count(kv.second.Scalar());
      } else if (k == "memory") {
        memory(kv.second.Scalar());
      } else if (k == "vendor") {
        continue;
      } else {
        yaml::warning_at(w_, kv.first, "resources.gpu." + printable(k), "not acted on");
      }
    }
  }

  void finish(JobSpec& spec) {
    std::vector<AcceleratorRequest> out;
    if (names_.empty()) {
      AcceleratorRequest any;
      any.count = count_;
      any.min_memory_bytes = min_memory_;
      out.push_back(any);
    } else {
      // The names go through SkyPilot's accelerator reader: unknown ones are dropped with a
      // warning while another is left.
      YAML::Node list(YAML::NodeType::Sequence);
      for (const auto& n : names_) list.push_back(fmt::format("{}:{}", n, count_));
      list.SetStyle(YAML::EmitterStyle::Flow);
      bool ordered = false;
      std::vector<AcceleratorRequest> named;
      if (!read_accelerators(w_, list, "resources.gpu", catalog_, named, ordered)) return;
      out = std::move(named);
    }
    spec.accelerators = std::move(out);
  }

 private:
  std::vector<std::string> split(const std::string& s) const {
    std::vector<std::string> parts;
    std::size_t from = 0;
    while (true) {
      auto comma = s.find(',', from);
      std::string p = trim(s.substr(from, comma == std::string::npos ? comma : comma - from));
      if (!p.empty()) parts.push_back(p);
      if (comma == std::string::npos) return parts;
      from = comma + 1;
    }
  }

  void token(const std::string& part) {
    if (part.empty()) return;
    std::string lower = to_lower(part);
    if (lower == "nvidia" || lower == "amd" || lower == "google" || lower == "intel") return;
    Range r = split_range(part);
    if (is_memory(r.low) || is_memory(r.high)) {
      memory(part);
    } else if (is_count(r.low) || (r.range && is_count(r.high))) {
      count(part);
    } else {
      for (const auto& n : split(part)) names_.push_back(n);
    }
  }

  void count(const std::string& text) {
    Range r = split_range(text);
    std::string low = r.low.empty() ? "1" : r.low;
    auto n = parse_number(low);
    if (!n || *n < 1 || *n != static_cast<int>(*n) || *n > 4096) {
      yaml::error_at(w_, at_, "resources.gpu",
                     fmt::format("expected a GPU count such as 2 or 1..8, got {}", quote(text)));
      return;
    }
    count_ = static_cast<int>(*n);
    if (r.range && r.high != low) {
      yaml::warning_at(w_, at_, "resources.gpu",
                       fmt::format("count {}: a range asks for its lower bound, {} GPU{} a node",
                                   text, count_, count_ == 1 ? "" : "s"));
    }
  }

  void memory(const std::string& text) {
    Range r = split_range(text);
    if (r.low.empty()) {
      yaml::warning_at(
          w_, at_, "resources.gpu",
          fmt::format("memory {}: no lower bound, so any card's memory will do", text));
      return;
    }
    auto b = parse_bytes(r.low, kGB);
    if (!b) {
      yaml::error_at(w_, at_, "resources.gpu", b.error().message);
      return;
    }
    // dstack's GB is 2^30 bytes; catalog memory is as the vendor gives it (24 GB cards).
    min_memory_ = *b;
    if (!r.range) {
      yaml::warning_at(w_, at_, "resources.gpu",
                       fmt::format("memory {}: taken as at least {} a card", text, r.low));
    }
  }

  const yaml::Where& w_;
  YAML::Node at_;
  const Catalog& catalog_;
  std::vector<std::string> names_;
  int count_ = 1;
  std::uint64_t min_memory_ = 0;
};

// cpu: 4, "4..", "2..8"; memory/disk: "16GB", "16GB..": their lower bounds.
std::optional<std::string> lower_bound(const yaml::Where& w, const YAML::Node& n,
                                       const std::string& key) {
  auto s = yaml::as_string(w, n, key);
  if (!s) return std::nullopt;
  Range r = split_range(*s);
  if (r.low.empty()) {
    yaml::warning_at(w, n, key, "no lower bound: not a constraint");
    return std::nullopt;
  }
  return r.low;
}

void read_resources(const yaml::Where& w, const YAML::Node& node, const Catalog& catalog,
                    JobSpec& spec) {
  if (!node.IsMap()) {
    yaml::error_at(w, node, "resources", "expected a mapping such as {gpu: 24GB, cpu: 4..}");
    return;
  }
  for (const auto& kv : node) {
    std::string key = kv.first.Scalar();
    std::string path = "resources." + printable(key);
    const YAML::Node& v = kv.second;
    if (key == "gpu") {
      GpuReader g(w, v, catalog);
      if (v.IsMap()) {
        g.map(v);
      } else if (v.IsScalar()) {
        g.text(v.Scalar());
      } else {
        yaml::error_at(w, v, path, "expected a GPU spec such as A100:2 or 24GB..");
        continue;
      }
      g.finish(spec);
    } else if (key == "cpu") {
      std::string text = v.IsMap() && v["count"] ? v["count"].Scalar() : v.Scalar();
      if (auto low = lower_bound(w, v.IsMap() ? v["count"] : v, path)) {
        auto n = parse_number(*low);
        if (!n || *n <= 0) {
          yaml::error_at(w, v, path,
                         fmt::format("expected a CPU count such as 4.., got {}", quote(text)));
        } else {
          spec.cpus = *n;
        }
      }
    } else if (key == "memory" || key == "disk") {
      const YAML::Node& size = v.IsMap() && v["size"] ? v["size"] : v;
      if (auto low = lower_bound(w, size, path)) {
        auto b = parse_bytes(*low, kGiB);
        if (!b) {
          yaml::error_at(w, v, path, b.error().message);
        } else if (key == "memory") {
          spec.memory_bytes = *b;
        } else {
          spec.disk_bytes = *b;
        }
      }
    } else {
      yaml::warning_at(w, kv.first, path, "not acted on");  // shm_size, ...
    }
  }
}

std::vector<std::string> names(const yaml::Where& w, const YAML::Node& n, const std::string& key) {
  std::vector<std::string> out;
  if (n.IsScalar()) {
    out.push_back(n.Scalar());
  } else if (n.IsSequence()) {
    for (const auto& item : n) {
      if (auto s = yaml::as_string(w, item, key)) out.push_back(*s);
    }
  } else {
    yaml::error_at(w, n, key, "expected a name or a list of names");
  }
  return out;
}

}  // namespace

bool is_dstack(const YAML::Node& doc) {
  if (!doc.IsMap()) return false;
  YAML::Node type = doc["type"];
  if (!type || !type.IsScalar()) return false;
  const std::string& t = type.Scalar();
  return t == "task" || t == "service" || t == "dev-environment";
}

void read_dstack(const yaml::Where& w, const YAML::Node& doc, const Catalog& catalog,
                 JobSpec& spec) {
  std::vector<std::string> backends, regions;
  for (const auto& kv : doc) {
    if (!kv.first.IsScalar()) continue;
    std::string key = kv.first.Scalar();
    const YAML::Node& v = kv.second;
    std::string path = printable(key);
    if (key == "type") {
      if (v.Scalar() == "dev-environment") {
        yaml::error_at(w, v, "type",
                       "a dstack dev-environment is interactive (an IDE), not a job: use hylab "
                       "run with a task");
      }
      spec.service = v.Scalar() == "service";
    } else if (key == "name") {
      if (auto s = yaml::as_string(w, v, "name")) spec.name = *s;
    } else if (key == "commands") {
      if (!v.IsSequence()) {
        yaml::error_at(w, v, "commands", "expected a list of shell commands");
        continue;
      }
      for (const auto& c : v) {
        if (auto s = yaml::as_string(w, c, "commands")) spec.run += *s + "\n";
      }
    } else if (key == "env") {
      if (v.IsMap()) {
        if (auto m = yaml::as_string_map(w, v, "env")) spec.envs = *m;
      } else if (v.IsSequence()) {
        for (const auto& item : v) {  // "K=V", or "K" (taken from the environment)
          auto s = yaml::as_string(w, item, "env");
          if (!s) continue;
          auto eq = s->find('=');
          if (eq == std::string::npos) {
            spec.envs[*s] = std::nullopt;
          } else {
            spec.envs[s->substr(0, eq)] = s->substr(eq + 1);
          }
        }
      } else {
        yaml::error_at(w, v, "env", "expected a list of NAME=VALUE or a mapping");
      }
    } else if (key == "nodes") {
      auto n = parse_number(v.Scalar());
      if (!n || *n < 1 || *n != static_cast<int>(*n)) {
        yaml::error_at(w, v, "nodes", "expected a whole number of nodes, 1 or more");
      } else {
        spec.num_nodes = static_cast<int>(*n);
      }
    } else if (key == "working_dir") {
      if (auto s = yaml::as_string(w, v, "working_dir")) spec.workdir = *s;
    } else if (key == "resources") {
      read_resources(w, v, catalog, spec);
    } else if (key == "spot_policy") {
      std::string p = v.Scalar();
      if (p == "spot") {
        spec.use_spot = true;
      } else if (p == "on-demand") {
        spec.use_spot = false;
      } else if (p != "auto") {
        yaml::error_at(w, v, "spot_policy", "expected spot, on-demand or auto, got " + quote(p));
      }
    } else if (key == "backends") {
      backends = names(w, v, "backends");
    } else if (key == "regions") {
      regions = names(w, v, "regions");
    } else {
      yaml::warning_at(w, kv.first, path, "not acted on");  // image, python, ports, ...
    }
  }
  // backends x regions: where it may run.
  for (const auto& b : backends.empty() ? std::vector<std::string>{"*"} : backends) {
    std::string provider = to_lower(b) == "kubernetes" ? "kubernetes" : to_lower(b);
    if (regions.empty()) {
      if (provider != "*") spec.pins.push_back({provider, std::nullopt});
      continue;
    }
    for (const auto& r : regions) spec.pins.push_back({provider, r});
  }
  if (spec.service) {
    if (!spec.category_given) spec.category = Category::kInference;
    spec.pattern = Pattern::kContinuous;
  }
}

}  // namespace hylab::detail
