// Output formats shared by the subcommands: the table and --explain text of placement
// decisions, their JSON form (the schema documented in the README), and a small JSON
// pretty printer. Pure functions: any thread.
#pragma once

#include <boost/json/fwd.hpp>
#include <string>
#include <vector>

#include "placement/engine.h"
#include "placement/json.h"

namespace hylab::cli {

enum class Format { kTable, kJson };

std::string decisions_table(const std::vector<placement::Decision>& ds);
std::string explain_text(const placement::Decision& d);
std::string cost_text(const placement::Decision& d);
std::string pretty_json(const boost::json::value& v);

// Lays out rows in aligned columns (first row is the header), every cell escaped as
// printable() does.
std::string columns(const std::vector<std::vector<std::string>>& rows);

}  // namespace hylab::cli
