#include "common/job_spec.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <utility>
#include <vector>

#include "common/config.h"
#include "common/text.h"
#include "common/units.h"
#include "common/yaml_reader.h"

namespace hylab {

std::string_view to_string(Category c) {
  switch (c) {
    case Category::kDevelopment:
      return "development";
    case Category::kTraining:
      return "training";
    case Category::kInference:
      return "inference";
    case Category::kDataProcessing:
      return "data-processing";
  }
  return "?";
}

std::string_view to_string(Sensitivity s) {
  switch (s) {
    case Sensitivity::kPublic:
      return "public";
    case Sensitivity::kInternal:
      return "internal";
    case Sensitivity::kSensitive:
      return "sensitive";
    case Sensitivity::kRegulated:
      return "regulated";
  }
  return "?";
}

std::string_view to_string(Pattern p) {
  switch (p) {
    case Pattern::kOneTime:
      return "one-time";
    case Pattern::kRecurring:
      return "recurring";
    case Pattern::kContinuous:
      return "continuous";
  }
  return "?";
}

std::string_view to_string(Reach r) { return r == Reach::kGlobal ? "global" : "regional"; }

namespace {

// The letters before a model's number, and the rest ("RTX4090" -> "RTX", "4090").
std::pair<std::string, std::string> model_parts(std::string_view name) {
  std::string norm;
  for (char c : name) {
    if (std::isalnum(static_cast<unsigned char>(c)))
      norm += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  std::size_t digit = 0;
  while (digit < norm.size() && !std::isdigit(static_cast<unsigned char>(norm[digit]))) ++digit;
  return {norm.substr(0, digit), norm.substr(digit)};
}

// Whether two letter runs are one typo apart: a substitution, an insertion, a deletion or
// two neighbours swapped.
bool one_typo_apart(const std::string& a, const std::string& b) {
  if (a == b) return true;
  if (a.size() == b.size()) {
    std::vector<std::size_t> diff;
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (a[i] != b[i]) diff.push_back(i);
    }
    if (diff.size() == 1) return true;
    return diff.size() == 2 && diff[1] == diff[0] + 1 && a[diff[0]] == b[diff[1]] &&
           a[diff[1]] == b[diff[0]];
  }
  const std::string& longer = a.size() > b.size() ? a : b;
  const std::string& shorter = a.size() > b.size() ? b : a;
  if (longer.size() != shorter.size() + 1) return false;
  for (std::size_t i = 0; i < longer.size(); ++i) {
    if (longer.substr(0, i) + longer.substr(i + 1) == shorter) return true;
  }
  return false;
}

// "did you mean" only for another spelling of the same model: the same number and suffix
// ("4090", "10G"), and the same letters but for case, separators, or one typo in a run of
// three or more ("rtx-4090", "RXT4090"). Never a different GPU: A10 is not A10G, L40 is not
// L40S, A1000 is not A100, B200 is not H200.
std::optional<std::string> same_model_spelling(std::string_view model, const Catalog& catalog) {
  auto [letters, rest] = model_parts(model);
  for (const auto& name : catalog.gpu_names()) {
    auto [l, r] = model_parts(name);
    if (r != rest) continue;
    if (l == letters || (l.size() >= 3 && one_typo_apart(l, letters))) return name;
  }
  return std::nullopt;
}

// One accelerator request, or why not. A model the catalog does not know is not reported
// here (`unknown` says why): among alternatives it is dropped with a warning, alone it is
// an error. Other errors are reported at once.
struct ParsedAccelerator {
  std::optional<AcceleratorRequest> request;
  std::string unknown;
};

ParsedAccelerator parse_accelerator(const yaml::Where& w, const YAML::Node& at,
                                    const std::string& key, std::string_view model,
                                    std::optional<std::string_view> count_text,
                                    const Catalog& catalog) {
  std::string model_s = trim(model);
  const GpuModel* gpu = catalog.find_gpu(model_s);
  if (!gpu) {
    std::string msg = fmt::format("unknown GPU model {}", quote(model_s));
    if (auto near = same_model_spelling(model_s, catalog)) {
      msg += fmt::format(" (did you mean '{}'?)", *near);
    } else {
      msg += "; the catalog knows " + join(catalog.gpu_names(), ", ");
    }
    return {std::nullopt, msg};
  }
  int count = 1;
  if (count_text) {
    std::string c = trim(*count_text);
    auto n = parse_number(c);
    if (!n && !c.empty() && c.front() == '-') {
      yaml::error_at(w, at, key, fmt::format("GPU count must be at least 1, got {}", c));
      return {};
    }
    if (!n) {
      yaml::error_at(w, at, key, fmt::format("GPU count must be a whole number, got {}", quote(c)));
      return {};
    }
    if (*n != std::trunc(*n)) {  // (not a cast: a count past long long's range is no integer)
      yaml::error_at(
          w, at, key,
          fmt::format("fractional GPU count {} is not supported: ask for whole GPUs", c));
      return {};
    }
    if (*n < 1) {
      yaml::error_at(w, at, key, fmt::format("GPU count must be at least 1, got {}", c));
      return {};
    }
    if (*n > 4096) {
      yaml::error_at(w, at, key, fmt::format("GPU count {} is over the limit of 4096 per node", c));
      return {};
    }
    count = static_cast<int>(*n);
  }
  return {AcceleratorRequest{gpu->name, count}, {}};
}

// "A100:8" or "A100" (count 1).
ParsedAccelerator parse_accelerator_text(const yaml::Where& w, const YAML::Node& at,
                                         const std::string& key, std::string_view text,
                                         const Catalog& catalog) {
  auto colon = text.find(':');
  if (colon == std::string_view::npos)
    return parse_accelerator(w, at, key, text, std::nullopt, catalog);
  return parse_accelerator(w, at, key, text.substr(0, colon), text.substr(colon + 1), catalog);
}

// accelerators: "A100:8" | {A100: 8, V100: 8} | {H200:8, H100:8} | ["A100:8", "V100:8"].
// In SkyPilot's usual {H200:8, H100:8}, YAML reads each "H200:8" as a key without a value.
// Among several alternatives, one the catalog does not know is dropped with a warning that
// names it; the request is refused only when none is left.
bool read_accelerators(const yaml::Where& w, const YAML::Node& n, const Catalog& catalog,
                       JobSpec& spec) {
  const std::string key = "resources.accelerators";
  bool ok = true;
  struct Unknown {
    YAML::Node at;
    std::string key;
    std::string message;
  };
  std::vector<Unknown> unknown;
  auto add = [&](const YAML::Node& at, const std::string& k, ParsedAccelerator a) {
    if (a.request) {
      spec.accelerators.push_back(*a.request);
    } else if (!a.unknown.empty()) {
      unknown.push_back({at, k, std::move(a.unknown)});
    } else {
      ok = false;
    }
  };
  if (n.IsNull()) return true;
  if (n.IsScalar()) {
    if (auto s = yaml::as_string(w, n, key)) {
      add(n, key, parse_accelerator_text(w, n, key, *s, catalog));
    } else {
      ok = false;
    }
  } else if (n.IsMap()) {
    for (const auto& kv : n) {
      auto model = yaml::as_string(w, kv.first, key);
      if (!model) {
        ok = false;
        continue;
      }
      std::string k = key + "." + *model;
      if (kv.second.IsNull()) {  // "A100" or "H200:8" as a key alone
        add(kv.first, k, parse_accelerator_text(w, kv.first, k, *model, catalog));
        continue;
      }
      auto count = yaml::as_string(w, kv.second, k);
      if (!count) {
        ok = false;
        continue;
      }
      add(kv.second, k, parse_accelerator(w, kv.second, k, *model, *count, catalog));
    }
  } else if (n.IsSequence()) {
    std::size_t i = 0;
    for (const auto& item : n) {
      std::string k = fmt::format("{}[{}]", key, i++);
      if (auto s = yaml::as_string(w, item, k)) {
        add(item, k, parse_accelerator_text(w, item, k, *s, catalog));
      } else {
        ok = false;
      }
    }
  } else {
    yaml::error_at(w, n, key, "expected a GPU request such as A100:8");
    return false;
  }
  bool left = !spec.accelerators.empty();
  for (auto& u : unknown) {
    if (left) {
      yaml::warning_at(w, u.at, u.key, u.message + ": this alternative is dropped");
    } else {
      yaml::error_at(w, u.at, u.key, u.message);
      ok = false;
    }
  }
  return ok;
}

// "4", 4, "4+": a positive amount with an optional "at least" marker.
std::optional<std::string> at_least_value(const yaml::Where& w, const YAML::Node& n,
                                          const std::string& key) {
  auto s = yaml::as_string(w, n, key);
  if (!s) return std::nullopt;
  std::string v = trim(*s);
  if (!v.empty() && v.back() == '+') v.pop_back();
  return v;
}

void read_resources(const yaml::Where& w, const YAML::Node& node, const Catalog& catalog,
                    JobSpec& spec) {
  yaml::MapReader m(w, node, "resources");
  if (!m.ok()) return;
  if (auto a = m.take("accelerators")) read_accelerators(w, *a, catalog, spec);
  if (auto c = m.take("cpus"); c && !c->IsNull()) {
    if (auto v = at_least_value(w, *c, "resources.cpus")) {
      auto n = parse_number(*v);
      if (!n) {
        yaml::error_at(w, *c, "resources.cpus",
                       "expected a number of CPUs such as 8 or 8+, got " + quote(c->Scalar()));
      } else if (*n <= 0) {
        yaml::error_at(w, *c, "resources.cpus", "must be greater than 0");
      } else {
        spec.cpus = *n;
      }
    }
  }
  if (auto mem = m.take("memory"); mem && !mem->IsNull()) {
    if (auto v = at_least_value(w, *mem, "resources.memory")) {
      auto b = parse_bytes(*v, kGiB);
      if (!b) {
        yaml::error_at(w, *mem, "resources.memory", b.error().message);
      } else if (*b == 0) {
        yaml::error_at(w, *mem, "resources.memory", "must be greater than 0");
      } else {
        spec.memory_bytes = *b;
      }
    }
  }
  spec.use_spot = m.boolean("use_spot");
  if (auto it = m.take("instance_type"); it && !it->IsNull()) {
    if (auto s = yaml::as_string(w, *it, "resources.instance_type")) {
      if (const Instance* inst = catalog.find_instance(*s)) {
        spec.instance_type = inst->name;
      } else {
        std::string msg = fmt::format("unknown instance type {}", quote(*s));
        if (auto near = did_you_mean(*s, catalog.instance_names())) {
          msg += fmt::format(" (did you mean '{}'?)", *near);
        } else {
          msg += "; add it under catalog.instances in hylab.yaml with its price";
        }
        yaml::error_at(w, *it, "resources.instance_type", msg);
      }
    }
  }
  if (auto d = m.take("disk_size"); d && !d->IsNull()) {
    if (auto b = yaml::as_bytes(w, *d, "resources.disk_size", kGB)) {
      if (*b == 0) {
        yaml::error_at(w, *d, "resources.disk_size", "must be greater than 0");
      } else {
        spec.disk_bytes = *b;
      }
    }
  }
  if (auto c = m.string("cloud")) {
    spec.cloud = to_lower(*c);
    bool known = false;
    for (const auto& i : catalog.instances) known = known || i.provider == *spec.cloud;
    if (!known) {
      yaml::warning_at(
          w, *m.take("cloud"), "resources.cloud",
          fmt::format("the catalog has no prices for cloud '{}'; cloud cost is unknown", *c));
    }
  }
  // SkyPilot keys hylab accepts but does not act on yet, each with what that means.
  m.accept_with_warning({
      {"region", "not a constraint yet: the job may run in any region"},
      {"zone", "not a constraint yet: the job may run in any zone"},
      {"infra", "not a constraint yet: the job may run on any target placement picks"},
      {"ports", "no port is opened or forwarded: the job's ports are reachable only where it runs"},
      {"image_id", "the job runs in the host's environment, not in the image"},
      {"labels", "not applied to anything"},
      {"accelerator_args", "not passed to the accelerator's runtime"},
      {"job_recovery",
       "hylab's own recovery applies: a preempted spot job is requeued, and "
       "after policy.max_preemptions it moves to on-demand"},
      {"spot_recovery",
       "hylab's own recovery applies: a preempted spot job is requeued, and "
       "after policy.max_preemptions it moves to on-demand"},
      {"disk_tier", "the target's default disks are used"},
      {"network_tier", "the target's default network is used"},
      {"autostop", "no cluster is kept up to stop: jobs run on the lab and existing targets"},
      {"any_of",
       "its alternatives are not considered yet: only resources.accelerators counts "
       "(without it the job is placed as asking for no GPU)"},
      {"ordered",
       "its alternatives are not considered yet: only resources.accelerators counts "
       "(without it the job is placed as asking for no GPU)"},
  });
  m.finish();
}

void read_data(const yaml::Where& w, const YAML::Node& node, JobSpec& spec) {
  yaml::MapReader m(w, node, "data");
  if (!m.ok()) return;
  if (auto s = m.choice("sensitivity", {"public", "internal", "sensitive", "regulated"})) {
    spec.sensitivity_given = true;
    if (*s == "public") spec.sensitivity = Sensitivity::kPublic;
    if (*s == "internal") spec.sensitivity = Sensitivity::kInternal;
    if (*s == "sensitive") spec.sensitivity = Sensitivity::kSensitive;
    if (*s == "regulated") spec.sensitivity = Sensitivity::kRegulated;
  }
  spec.data_bytes = m.bytes("size", kGB);
  if (auto v = m.string_list("inputs")) spec.data_inputs = *v;
  m.finish();
}

// Every string of a job spec is stored, listed, and handed to bash and the environment,
// so each must be text: valid UTF-8 without control characters. Scripts (run, setup) and
// environment values may hold tabs and newlines; names, paths and keys are one line.
bool multiline_field(std::string_view path) {
  return path == "run" || path == "setup" || path.rfind("envs.", 0) == 0;
}

// The raw text first: yaml-cpp passes bytes that are not UTF-8 through untouched, and here
// the first one can be shown at its line and column.
bool check_utf8(std::string_view text, const std::string& file, Diagnostics& diag) {
  auto bad = first_invalid_utf8(text);
  if (!bad) return true;
  std::string_view before = text.substr(0, *bad);
  auto line = static_cast<int>(std::count(before.begin(), before.end(), '\n')) + 1;
  auto nl = before.rfind('\n');
  auto column =
      static_cast<int>(nl == std::string_view::npos ? before.size() + 1 : before.size() - nl);
  diag.error(file, line, column, "",
             fmt::format("byte 0x{:02x} is not valid UTF-8: a job spec must be UTF-8 text",
                         static_cast<unsigned char>(text[*bad])));
  return false;
}

// Then every parsed scalar, keys included: escapes in quoted strings ("\e", "\x9b") make
// characters the raw text does not show.
void check_strings(const yaml::Where& w, const YAML::Node& n, const std::string& path) {
  auto check = [&](const YAML::Node& at, const std::string& key, bool multiline) {
    if (auto fault = find_text_fault(at.Scalar(), multiline)) {
      yaml::error_at(w, at, key.empty() ? "(top level)" : key,
                     fmt::format("{} at byte {}: {}", fault->message, fault->offset,
                                 multiline ? "only tab and newline may appear in a script or "
                                             "an environment value"
                                           : "this value must be one line of text"));
    }
  };
  if (n.IsScalar()) {
    check(n, path, multiline_field(path));
  } else if (n.IsSequence()) {
    std::size_t i = 0;
    for (const auto& item : n) check_strings(w, item, fmt::format("{}[{}]", path, i++));
  } else if (n.IsMap()) {
    for (const auto& kv : n) {
      if (!kv.first.IsScalar()) continue;  // MapReader reports it
      // Escaped: the path is printed in the message, and this key may be the bad string.
      std::string name = printable(kv.first.Scalar());
      std::string key = path.empty() ? name : path + "." + name;
      check(kv.first, key, /*multiline=*/false);
      check_strings(w, kv.second, key);
    }
  }
}

std::string file_stem(const std::string& path) {
  auto slash = path.find_last_of('/');
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  auto dot = base.find_last_of('.');
  return dot == std::string::npos || dot == 0 ? base : base.substr(0, dot);
}

}  // namespace

std::optional<JobSpec> load_job_spec_text(std::string_view text, const std::string& file,
                                          const Catalog& catalog, Diagnostics& diag) {
  std::size_t errors_before = diag.error_count();
  if (text.size() > kMaxJobSpecBytes) {
    diag.error(file, 0, 0, "",
               fmt::format("job spec is {} bytes, over the limit of {} bytes", text.size(),
                           kMaxJobSpecBytes));
    return std::nullopt;
  }
  if (!check_utf8(text, file, diag)) return std::nullopt;
  auto doc = yaml::parse(text, file, diag);
  if (!doc) return std::nullopt;
  yaml::Where w{file, diag};
  check_strings(w, *doc, "");
  JobSpec spec;
  spec.file = file;
  yaml::MapReader top(w, *doc, "");
  if (!top.ok()) return std::nullopt;
  if (doc->IsNull()) {
    diag.error(file, 0, 0, "", "the job spec is empty: give at least a name and a run command");
    return std::nullopt;
  }

  spec.name = top.string("name").value_or(file_stem(file));
  spec.workdir = top.string("workdir");
  if (auto n = top.integer("num_nodes", 1)) spec.num_nodes = static_cast<int>(*n);
  if (auto r = top.take("resources")) read_resources(w, *r, catalog, spec);
  if (auto e = top.take("envs")) {
    if (auto v = yaml::as_string_map(w, *e, "envs")) spec.envs = *v;
  }
  if (auto fm = top.take("file_mounts"); fm && !fm->IsNull()) {
    if (!fm->IsMap()) {
      yaml::error_at(w, *fm, "file_mounts", "expected a mapping of remote paths to sources");
    } else {
      for (const auto& kv : *fm) {
        auto target = yaml::as_string(w, kv.first, "file_mounts");
        if (!target) continue;
        if (kv.second.IsScalar()) {
          spec.file_mounts[*target] = kv.second.Scalar();
        } else if (kv.second.IsMap()) {
          spec.file_mounts[*target] = "(storage mount)";
        } else {
          yaml::error_at(w, kv.second, "file_mounts." + *target,
                         "expected a source path or a storage mapping, got " +
                             std::string(yaml::type_name(kv.second)));
        }
      }
    }
  }
  if (auto v = top.string("setup")) spec.setup = *v;
  if (auto v = top.string("run")) spec.run = *v;

  if (auto c =
          top.choice("category", {"development", "training", "inference", "data-processing"})) {
    spec.category_given = true;
    if (*c == "development") spec.category = Category::kDevelopment;
    if (*c == "training") spec.category = Category::kTraining;
    if (*c == "inference") spec.category = Category::kInference;
    if (*c == "data-processing") spec.category = Category::kDataProcessing;
  }
  if (auto d = top.take("data")) read_data(w, *d, spec);
  if (auto h = top.take("hours"); h && !h->IsNull()) {
    if (auto v = yaml::as_hours(w, *h, "hours")) {
      if (*v <= 0) {
        yaml::error_at(w, *h, "hours", "the estimated run time must be greater than 0");
      } else {
        spec.hours = *v;
      }
    }
  }
  if (auto p = top.choice("pattern", {"one-time", "recurring", "continuous"})) {
    if (*p == "one-time") spec.pattern = Pattern::kOneTime;
    if (*p == "recurring") spec.pattern = Pattern::kRecurring;
    if (*p == "continuous") spec.pattern = Pattern::kContinuous;
  }
  if (auto r = top.choice("reach", {"regional", "global"})) {
    spec.reach = *r == "global" ? Reach::kGlobal : Reach::kRegional;
  }
  if (auto o = top.string_list("outputs")) spec.outputs = *o;
  top.accept_with_warning({
      {"service",
       "placed as a job, not a service: one replica, no readiness probe, no load "
       "balancer (service.replicas is not read)"},
      {"secrets", "not passed to the job"},
      {"config", "SkyPilot's per-task configuration overrides do not apply"},
      {"volumes", "not mounted"},
      {"event_callback", "not run"},
      {"experimental", "ignored"},
  });
  top.finish();
  if (diag.error_count() > errors_before) return std::nullopt;
  return spec;
}

std::optional<JobSpec> load_job_spec_file(const std::string& path, const Catalog& catalog,
                                          Diagnostics& diag) {
  auto text = read_text_file(path, kMaxJobSpecBytes);
  if (!text) {
    diag.error(path, 0, 0, "", text.error().message.substr(path.size() + 2));
    return std::nullopt;
  }
  return load_job_spec_text(*text, path, catalog, diag);
}

}  // namespace hylab
