// The JSON form of a placement decision (the schema in the README), shared by the CLI's
// `-o json` and the control plane's API. Pure: any thread.
#pragma once

#include <boost/json/object.hpp>

#include "placement/engine.h"

namespace hylab::placement {

boost::json::object decision_json(const Decision& d);

}  // namespace hylab::placement
