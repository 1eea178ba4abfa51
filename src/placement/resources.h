// Matching a job's resource request to the lab and to the catalog's cloud instances.
// Local: the first alternative the lab can hold, in whole GPUs of the requested model or
// of a lab model with at least as much memory per card (as the local executor allocates
// them; any cards for a count of any model), plus CPUs, memory and disk. An alternative
// pinned to a cloud, or of a cloud-only accelerator (TPU, Inferentia, Trainium), never
// runs on the lab. Cloud: per alternative the cheapest catalog instance that carries it
// (within its pins), or failing that one with cards at least as large; then the cheapest
// alternative, or the first one offered when they are ordered. Speeds are relative to
// the requested GPUs, from the catalog's throughput figures. Pure: any thread.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/catalog.h"
#include "common/config.h"
#include "common/job_spec.h"

namespace hylab::placement {

struct LocalFit {
  bool fits = false;
  std::string why_not;     // when it does not fit: what is missing, in figures
  std::string request;     // "8x A100 (40 GB each)"
  std::string allocation;  // "2x RTX4090"
  int gpus_used = 0;
  double share = 0;                 // fraction of the lab the job occupies, for its cost
  double speed = 1;                 // lab throughput / requested throughput (below 1: slower)
  int alternative = -1;             // the spec.accelerators entry it runs; -1: CPUs only
  std::vector<std::string> passed;  // alternatives before it and why they do not fit
};

struct CloudOffer {
  const Instance* instance = nullptr;
  int count = 1;         // instances (one per node)
  double speed = 1;      // instance throughput / requested throughput
  std::string note;      // why this instance (e.g. a substitute for a model no cloud rents)
  int alternative = -1;  // the spec.accelerators entry it prices; -1: CPUs only
  // Among several alternatives: each one's offer or why it has none, in the spec's order.
  std::vector<std::string> compared;

  double usd_per_hour() const { return instance->usd_per_hour * count; }
  double spot_usd_per_hour() const { return instance->spot_usd_per_hour * count; }
};

LocalFit fit_local(const JobSpec& spec, const Config& cfg);
// Nothing when no instance fits; `why_none` then says why.
std::optional<CloudOffer> match_cloud(const JobSpec& spec, const Catalog& catalog,
                                      std::string* why_none);
std::string describe_request(const JobSpec& spec, const Catalog& catalog);
std::string describe_alternative(const AcceleratorRequest& a, const Catalog& catalog);
std::string describe_lab(const Lab& lab);

}  // namespace hylab::placement
