// The job spec: one workload per YAML file. A SkyPilot task file is a valid job spec
// (name, workdir, num_nodes, resources, envs, file_mounts, setup, run keep SkyPilot's
// meaning); hylab adds the keys placement needs (category, data, hours, pattern,
// reach, outputs). Loading is strict and reports every problem at once with
// file:line:column. A JobSpec is a plain value: any thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/catalog.h"
#include "common/diagnostics.h"

namespace hylab {

enum class Category { kDevelopment, kTraining, kInference, kDataProcessing };
enum class Sensitivity { kPublic, kInternal, kSensitive, kRegulated };
enum class Pattern { kOneTime, kRecurring, kContinuous };
enum class Reach { kRegional, kGlobal };

std::string_view to_string(Category c);
std::string_view to_string(Sensitivity s);
std::string_view to_string(Pattern p);
std::string_view to_string(Reach r);

// Where a job may run: a cloud provider, and maybe one of its regions. From
// resources.cloud/region or resources.infra ("aws/us-east-1"; "k8s" is "kubernetes").
struct Pin {
  std::string provider;  // lower case; "*": any provider (infra: "*/us-east-1")
  std::optional<std::string> region;
  bool operator==(const Pin&) const = default;
};
std::string to_string(const Pin& p);  // "aws/us-east-1"

// One alternative of the request: a whole number of accelerators of one catalog model
// (canonical name) per node, or of any GPU model when `model` is empty ("accelerators: 4").
// An alternative from an any_of/ordered entry carries that entry's pin and spot choice.
struct AcceleratorRequest {
  std::string model;
  int count = 1;
  std::uint64_t min_memory_bytes = 0;  // any model: at least this much per card (dstack's 24GB..)
  std::optional<Pin> pin{};            // unset: the job's pins
  std::optional<bool> use_spot{};      // unset: the job's
  std::optional<double> cpus{};        // an any_of/ordered entry's own; unset: the job's
  std::optional<std::uint64_t> memory_bytes{};
  std::string origin{};  // where it was written: "resources.any_of[1]"

  bool any_model() const { return model.empty(); }
};
std::string to_string(const AcceleratorRequest& a);  // "H100:8", "any GPU:4", "+ on aws"

struct JobSpec {
  std::string file;  // where it was loaded from, for messages
  std::string name;

  // SkyPilot's keys.
  std::optional<std::string> workdir;
  int num_nodes = 1;
  // Alternatives: a set or map in accelerators, or any_of, leave the cloud the cheapest;
  // a list, or ordered, is in order of preference (`ordered`). The lab runs the first it
  // can hold either way.
  std::vector<AcceleratorRequest> accelerators;
  bool ordered = false;
  std::optional<double> cpus;                 // per node; "4+" means at least 4
  std::optional<std::uint64_t> memory_bytes;  // per node
  std::optional<double> memory_per_cpu_gib;   // "8x": at least 8 GiB per vCPU
  std::optional<bool> use_spot;               // unset: placement decides
  std::optional<std::string> instance_type;   // canonical catalog name
  std::optional<std::uint64_t> disk_bytes;
  // Where it may run (any of them); empty: anywhere, the lab included. A pinned job goes
  // only to a cloud target that declares the provider (and region).
  std::vector<Pin> pins;
  bool service = false;  // a SkyServe `service:` section: an inference service
  std::map<std::string, std::optional<std::string>> envs;
  std::map<std::string, std::string> file_mounts;  // remote path -> source (as written)
  std::string setup;
  std::string run;

  // hylab's placement keys. Defaults are recorded as such, so the decision can say
  // "category not set: treated as training".
  Category category = Category::kTraining;
  bool category_given = false;
  Sensitivity sensitivity = Sensitivity::kInternal;
  bool sensitivity_given = false;
  std::optional<std::uint64_t> data_bytes;
  std::vector<std::string> data_inputs;
  std::optional<double> hours;  // estimated run time on the requested resources
  Pattern pattern = Pattern::kOneTime;
  bool pattern_given = false;
  Reach reach = Reach::kRegional;
  std::vector<std::string> outputs;

  // The pins of one alternative: its own, else the job's.
  std::vector<Pin> pins_of(const AcceleratorRequest& a) const {
    return a.pin ? std::vector<Pin>{*a.pin} : pins;
  }
  // The job as one alternative asks for it: its own CPUs and memory over the job's.
  JobSpec as_alternative(const AcceleratorRequest& a) const {
    JobSpec s = *this;
    if (a.cpus) s.cpus = a.cpus;
    if (a.memory_bytes) s.memory_bytes = a.memory_bytes;
    return s;
  }

  bool sensitive() const {
    return sensitivity == Sensitivity::kSensitive || sensitivity == Sensitivity::kRegulated;
  }
};

// Job specs are small; anything larger is refused before parsing.
inline constexpr std::size_t kMaxJobSpecBytes = 256UL * 1024;

// One job spec: a file of one YAML document (a file of several is refused here, and names
// load_pipeline_text).
std::optional<JobSpec> load_job_spec_text(std::string_view text, const std::string& file,
                                          const Catalog& catalog, Diagnostics& diag);
std::optional<JobSpec> load_job_spec_file(const std::string& path, const Catalog& catalog,
                                          Diagnostics& diag);

// A file of several YAML documents is a pipeline, SkyPilot's chain: a job per document, each
// starting when the one before has succeeded, the rest cancelled when one fails. A first
// document with nothing but `name:` names the pipeline; SkyPilot's job-group header (with
// `execution: parallel`) makes the jobs start together instead. A file of one document is a
// pipeline of one job. Diagnostics keep the file's own line numbers.
struct PipelineSpec {
  std::string name;     // the first document's lone `name:`, else the file's stem
  bool header = false;  // the file starts with such a document
  // SkyPilot's job group (`execution: parallel` in the header): the jobs start together and
  // wait for none of the others.
  bool parallel = false;
  std::vector<JobSpec> jobs;       // in order
  std::vector<std::string> texts;  // each job's own document, as stored for it

  bool chain() const { return jobs.size() > 1; }
};

inline constexpr std::size_t kMaxPipelineJobs = 64;

std::optional<PipelineSpec> load_pipeline_text(std::string_view text, const std::string& file,
                                               const Catalog& catalog, Diagnostics& diag);
std::optional<PipelineSpec> load_pipeline_file(const std::string& path, const Catalog& catalog,
                                               Diagnostics& diag);

}  // namespace hylab
