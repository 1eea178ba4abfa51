#include "placement/json.h"

#include <boost/json.hpp>
#include <cmath>

namespace hylab::placement {

namespace json = boost::json;

namespace {

double round_to(double v, int digits) {
  double f = std::pow(10.0, digits);
  return std::round(v * f) / f;
}

json::value money(double usd) { return round_to(usd, 4); }

json::object local_json(const placement::LocalCost& l) {
  json::object o;
  o["fits"] = l.fits;
  if (l.fits) {
    o["allocation"] = l.allocation;
    o["share"] = round_to(l.share, 4);
    o["hours"] = round_to(l.hours, 3);
    o["usd"] = money(l.usd);
  } else {
    o["reason"] = l.why_not;
  }
  return o;
}

json::value cloud_json(const placement::CloudCost& c, bool spot) {
  json::object o;
  o["available"] = c.available;
  if (!c.available) {
    o["reason"] = c.why_not;
    return o;
  }
  o["provider"] = c.provider;
  o["instance"] = c.instance;
  o["count"] = c.count;
  o["hours"] = round_to(c.hours, 3);
  o["usd_per_hour"] = money(c.usd_per_hour);
  o["spot_usd_per_hour"] = money(c.spot_usd_per_hour);
  o["usd_on_demand"] = money(c.usd_on_demand);
  o["usd_spot"] = money(c.usd_spot);
  o["usd"] = money(spot ? c.usd_spot : c.usd_on_demand);
  o["note"] = c.note;
  o["source"] = c.source;
  o["date"] = c.date;
  return o;
}

}  // namespace

json::object decision_json(const Decision& d) {
  json::object o;
  o["name"] = d.name;
  o["file"] = d.file;
  o["placeable"] = d.placeable;
  o["environment"] = std::string(placement::to_string(d.environment));
  o["rule"] = d.rule;
  o["spot"] = d.spot;
  json::array reasons;
  for (const auto& r : d.reasons) reasons.emplace_back(r);
  o["reasons"] = std::move(reasons);
  json::array path;
  for (const auto& c : d.path) {
    json::object step;
    step["rule"] = c.rule;
    step["question"] = c.question;
    step["answer"] = c.answer;
    json::object inputs;
    for (const auto& [k, v] : c.inputs) inputs[k] = v;
    step["inputs"] = std::move(inputs);
    step["then"] = c.note;
    path.emplace_back(std::move(step));
  }
  o["path"] = std::move(path);
  json::object cost;
  cost["hours"] = round_to(d.cost.hours, 3);
  cost["per_hour"] = d.cost.per_hour;
  cost["local"] = local_json(d.cost.local);
  cost["cloud"] = cloud_json(d.cost.cloud, d.spot);
  o["cost"] = std::move(cost);
  o["breakeven_months"] =
      d.breakeven_months ? json::value(round_to(*d.breakeven_months, 3)) : json::value(nullptr);
  o["matrix_cell"] = d.matrix_cell ? json::value(*d.matrix_cell) : json::value(nullptr);
  return o;
}

}  // namespace hylab::placement
