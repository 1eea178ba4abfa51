// Reading a catalog from YAML, shared by the embedded catalog and the config's
// `catalog:` section. Internal to common/.
#pragma once

#include "common/catalog.h"
#include "common/yaml_reader.h"

namespace hylab {

// Reads `node` (a mapping with spot_discount, gpus, instances) into `into`. With
// `overrides`, entries whose name exists replace only the fields they give, and new
// entries must be complete. Errors go to w.diag.
void read_catalog(const yaml::Where& w, const YAML::Node& node, const std::string& path,
                  Catalog& into, bool overrides);

}  // namespace hylab
