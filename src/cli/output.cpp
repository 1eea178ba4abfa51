#include "cli/output.h"

#include <fmt/format.h>

#include <boost/json.hpp>
#include <cmath>

#include "common/text.h"
#include "common/units.h"

namespace hylab::cli {

namespace json = boost::json;
using placement::Decision;
using placement::decision_json;

namespace {

std::string money_cell(const placement::CostEstimate& c, bool local_side, bool spot) {
  std::string per = c.per_hour ? "/h" : "";
  if (local_side) {
    if (!c.local.fits) return "does not fit";
    return format_usd(c.local.usd) + per;
  }
  if (!c.cloud.available) return "no price";
  double usd = spot ? c.cloud.usd_spot : c.cloud.usd_on_demand;
  return fmt::format("{}{} {}{}", format_usd(usd), per, c.cloud.instance,
                     c.cloud.count > 1 ? fmt::format(" x{}", c.cloud.count) : "");
}

}  // namespace

std::string columns(const std::vector<std::vector<std::string>>& raw) {
  // A cell is shown, never obeyed: a stored name with terminal escapes (ESC [ 2 J) or a
  // newline would otherwise clear the screen or break the table.
  std::vector<std::vector<std::string>> rows;
  rows.reserve(raw.size());
  for (const auto& r : raw) {
    auto& row = rows.emplace_back();
    for (const auto& cell : r) row.push_back(printable(cell));
  }
  std::vector<std::size_t> width;
  for (const auto& r : rows) {
    if (width.size() < r.size()) width.resize(r.size(), 0);
    for (std::size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  std::string out;
  for (const auto& r : rows) {
    std::string line;
    for (std::size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 2, ' ');
    }
    out += line + '\n';
  }
  return out;
}

std::string decisions_table(const std::vector<Decision>& ds) {
  std::vector<std::vector<std::string>> rows{
      {"JOB", "ENV", "RULE", "SPOT", "LOCAL", "CLOUD", "WHY"}};
  for (const auto& d : ds) {
    std::string env = d.placeable ? std::string(placement::to_string(d.environment)) : "-";
    std::string why = d.reasons.empty() ? "" : d.reasons.front();
    for (const auto& r : d.reasons) {  // past the notes on how the job was read
      if (r.rfind("category not set", 0) != 0 && r.rfind("service: ", 0) != 0) {
        why = r;
        break;
      }
    }
    rows.push_back({d.name, env, d.placeable ? d.rule : "CANNOT PLACE", d.spot ? "yes" : "no",
                    money_cell(d.cost, true, false), money_cell(d.cost, false, d.spot), why});
  }
  return columns(rows);
}

std::string explain_text(const Decision& d) {
  std::string out = fmt::format("{} ({})\n", d.name, d.file);
  int i = 1;
  for (const auto& c : d.path) {
    out += fmt::format("  {}. {}  {}  -> {}\n", i++, c.question, c.answer ? "yes" : "no", c.note);
    for (const auto& [k, v] : c.inputs) out += fmt::format("       {}: {}\n", k, v);
  }
  if (d.placeable) {
    out += fmt::format("  => {} by rule {}{}\n", placement::to_string(d.environment), d.rule,
                       d.spot ? ", on spot" : "");
  } else {
    out += "  => cannot place\n";
  }
  for (const auto& r : d.reasons) out += "     - " + r + "\n";
  out += cost_text(d);
  return out;
}

std::string cost_text(const Decision& d) {
  const auto& c = d.cost;
  std::string basis = c.per_hour ? "per hour (the spec gives no hours)"
                                 : fmt::format("for {} of work", format_hours(c.hours));
  std::string out = fmt::format("  cost {}:\n", basis);
  if (c.local.fits) {
    out +=
        fmt::format("     local: {} on {} ({:.0f}% of the lab) for {}\n", format_usd(c.local.usd),
                    c.local.allocation, c.local.share * 100, format_hours(c.local.hours));
  } else {
    out += "     local: does not fit: " + c.local.why_not + "\n";
  }
  if (c.cloud.available) {
    out += fmt::format("     cloud: {} on-demand, {} spot: {}{} ({}) for {}, {}/h on-demand\n",
                       format_usd(c.cloud.usd_on_demand), format_usd(c.cloud.usd_spot),
                       c.cloud.count > 1 ? fmt::format("{}x ", c.cloud.count) : "",
                       c.cloud.instance, c.cloud.provider, format_hours(c.cloud.hours),
                       format_usd(c.cloud.usd_per_hour));
    out += fmt::format("            {}; price from {} ({})\n", c.cloud.note, c.cloud.source,
                       c.cloud.date);
  } else {
    out += "     cloud: no price: " + c.cloud.why_not + "\n";
  }
  if (d.breakeven_months)
    out += fmt::format("     break-even of the lab's share at 24/7: {:.1f} months\n",
                       *d.breakeven_months);
  return out;
}

namespace {
// A JSON string, valid UTF-8 whatever the server sent (see escape_invalid_utf8).
std::string string_json(std::string_view s) {
  return json::serialize(json::value(escape_invalid_utf8(s)));
}

void pretty(std::string& out, const json::value& v, int indent) {
  std::string pad(static_cast<std::size_t>(indent) * 2, ' ');
  std::string pad_in(static_cast<std::size_t>(indent + 1) * 2, ' ');
  if (v.is_object()) {
    const auto& o = v.get_object();
    if (o.empty()) {
      out += "{}";
      return;
    }
    out += "{\n";
    bool first = true;
    for (const auto& kv : o) {
      if (!first) out += ",\n";
      first = false;
      out += pad_in + string_json(kv.key()) + ": ";
      pretty(out, kv.value(), indent + 1);
    }
    out += "\n" + pad + "}";
  } else if (v.is_array()) {
    const auto& a = v.get_array();
    if (a.empty()) {
      out += "[]";
      return;
    }
    out += "[\n";
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (i) out += ",\n";
      out += pad_in;
      pretty(out, a[i], indent + 1);
    }
    out += "\n" + pad + "]";
  } else if (v.is_double()) {
    // Boost.JSON 1.81 writes 0.9 as 9E-1; people and jq prefer the shortest decimal.
    double d = v.get_double();
    out += std::isfinite(d) ? fmt::format("{}", d) : "null";
  } else if (v.is_string()) {
    out += string_json(v.get_string());
  } else {
    out += json::serialize(v);
  }
}
}  // namespace

std::string pretty_json(const json::value& v) {
  std::string out;
  pretty(out, v, 0);
  out += '\n';
  return out;
}

}  // namespace hylab::cli
