// dstack's task and service files (`type: task` / `type: service`), read where their forms
// map cleanly onto a job spec: name, commands (the run script), env, nodes, working_dir,
// resources.gpu/cpu/memory/disk, spot_policy, backends and regions (pins). A range asks for
// its lower bound, and says so; every other dstack key is accepted with a warning that
// names it. Internal to the job-spec loader (job_spec.cpp).
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

#include "common/catalog.h"
#include "common/job_spec.h"
#include "common/yaml_reader.h"

namespace hylab::detail {

bool is_dstack(const YAML::Node& doc);
void read_dstack(const yaml::Where& w, const YAML::Node& doc, const Catalog& catalog,
                 JobSpec& spec);

// job_spec.cpp's reader of SkyPilot's accelerators, shared with dstack's gpu names.
bool read_accelerators(const yaml::Where& w, const YAML::Node& n, const std::string& key,
                       const Catalog& catalog, std::vector<AcceleratorRequest>& out, bool& ordered);

}  // namespace hylab::detail
