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

// "A100:8": a whole number of GPUs of one catalog model (canonical name).
struct AcceleratorRequest {
  std::string model;
  int count = 1;
};

struct JobSpec {
  std::string file;  // where it was loaded from, for messages
  std::string name;

  // SkyPilot's keys.
  std::optional<std::string> workdir;
  int num_nodes = 1;
  std::vector<AcceleratorRequest> accelerators;  // alternatives, in order of preference
  std::optional<double> cpus;                    // per node; "4+" means at least 4
  std::optional<std::uint64_t> memory_bytes;     // per node
  std::optional<bool> use_spot;                  // unset: placement decides
  std::optional<std::string> instance_type;      // canonical catalog name
  std::optional<std::uint64_t> disk_bytes;
  std::optional<std::string> cloud;  // restricts cloud pricing to one provider
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
  Reach reach = Reach::kRegional;
  std::vector<std::string> outputs;

  bool sensitive() const {
    return sensitivity == Sensitivity::kSensitive || sensitivity == Sensitivity::kRegulated;
  }
};

// Job specs are small; anything larger is refused before parsing.
inline constexpr std::size_t kMaxJobSpecBytes = 256UL * 1024;

std::optional<JobSpec> load_job_spec_text(std::string_view text, const std::string& file,
                                          const Catalog& catalog, Diagnostics& diag);
std::optional<JobSpec> load_job_spec_file(const std::string& path, const Catalog& catalog,
                                          Diagnostics& diag);

}  // namespace hylab
