#include "cli/app.h"

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <boost/json.hpp>
#include <cmath>
#include <optional>

#include "cli/client.h"
#include "cli/data.h"
#include "cli/output.h"
#include "cli/schedule.h"
#include "common/config.h"
#include "common/job_spec.h"
#include "common/text.h"
#include "common/units.h"
#include "gateway/gateway.h"
#include "placement/cost.h"
#include "placement/engine.h"
#include "server/serve.h"

namespace hylab::cli {

namespace json = boost::json;

namespace {

struct GlobalOptions {
  std::optional<std::string> config;
  std::string output = "table";
  Format format() const { return output == "json" ? Format::kJson : Format::kTable; }
};

struct Io {
  std::ostream& out;
  std::ostream& err;
};

// Loads the lab config. `required`: without one, say where hylab looked and stop.
std::optional<Config> load_config(const GlobalOptions& g, bool required, Io io, int* exit_code) {
  auto loc = locate_config(g.config);
  if (!loc) {
    if (!required) return std::optional<Config>(std::in_place);
    io.err << "error: no lab config: pass --config FILE, set $HYLAB_CONFIG, or create "
           << default_config_path() << " (start from examples/hylab.yaml)\n";
    *exit_code = kExitBadInput;
    return std::nullopt;
  }
  Diagnostics diag;
  auto cfg = load_config_file(loc->path, diag);
  io.err << diag.str();
  if (!cfg) {
    io.err << fmt::format("error: the config from {} ({}) has {} error{}\n", loc->how, loc->path,
                          diag.error_count(), diag.error_count() == 1 ? "" : "s");
    *exit_code = kExitBadInput;
    return std::nullopt;
  }
  return cfg;
}

struct PlaceOptions {
  std::vector<std::string> files;
  bool explain = false;
};

int cmd_place(const GlobalOptions& g, const PlaceOptions& p, Io io) {
  int code = kExitOk;
  auto cfg = load_config(g, true, io, &code);
  if (!cfg) return code;
  std::vector<placement::Decision> decisions;
  bool bad = false;
  for (const auto& file : p.files) {
    Diagnostics diag;
    auto pipeline = load_pipeline_file(file, cfg->catalog, diag);  // a decision per document
    io.err << diag.str();
    if (!pipeline) {
      bad = true;
      continue;
    }
    for (const auto& spec : pipeline->jobs) {
      decisions.push_back(placement::decide(spec, *cfg));
      if (pipeline->chain()) decisions.back().name = pipeline->name + "/" + spec.name;
    }
  }
  bool unplaceable = false;
  for (const auto& d : decisions) unplaceable = unplaceable || !d.placeable;
  if (g.format() == Format::kJson) {
    json::array arr;
    for (const auto& d : decisions) arr.emplace_back(decision_json(d));
    io.out << pretty_json(arr);
  } else if (p.explain) {
    for (std::size_t i = 0; i < decisions.size(); ++i)
      io.out << (i ? "\n" : "") << explain_text(decisions[i]);
  } else if (!decisions.empty()) {
    io.out << decisions_table(decisions);
    if (std::any_of(decisions.begin(), decisions.end(),
                    [](const auto& d) { return d.cost.per_hour; })) {
      io.out << "(costs per hour where a job gives no hours; --explain shows every rule checked)\n";
    }
  }
  for (const auto& d : decisions) {
    if (d.placeable) continue;
    for (const auto& r : d.reasons) {
      if (r.rfind("cannot place", 0) == 0) io.err << "error: " << d.name << ": " << r << "\n";
    }
  }
  if (bad) return kExitBadInput;
  return unplaceable ? kExitCannotPlace : kExitOk;
}

int cmd_estimate(const GlobalOptions& g, const std::string& file, Io io) {
  int code = kExitOk;
  auto cfg = load_config(g, true, io, &code);
  if (!cfg) return code;
  Diagnostics diag;
  auto spec = load_job_spec_file(file, cfg->catalog, diag);
  io.err << diag.str();
  if (!spec) return kExitBadInput;
  auto d = placement::decide(*spec, *cfg);
  if (g.format() == Format::kJson) {
    json::object o = decision_json(d);
    json::object out;
    out["name"] = o["name"];
    out["environment"] = o["environment"];
    out["spot"] = o["spot"];
    out["cost"] = o["cost"];
    out["breakeven_months"] = o["breakeven_months"];
    io.out << pretty_json(out);
  } else {
    io.out << fmt::format("{}: placed {}{} (rule {})\n", d.name,
                          placement::to_string(d.environment), d.spot ? " on spot" : "", d.rule)
           << cost_text(d);
  }
  return kExitOk;
}

struct BreakevenOptions {
  std::optional<double> hardware_usd;
  std::optional<double> power_watts;
  std::optional<double> idle_watts;
  std::optional<double> usd_per_kwh;
  std::optional<double> cloud_usd_per_hour;
  std::optional<double> service_life_months;
  double hours_per_day = 24;
  std::optional<std::string> gpu;
  std::optional<std::string> vs;
};

// The cheapest catalog price of one GPU of `model` per hour (instance price / its GPUs).
std::optional<std::pair<double, std::string>> per_gpu_price(const Catalog& c, const GpuModel& m) {
  std::optional<std::pair<double, std::string>> best;
  for (const auto& i : c.instances) {
    if (i.gpu != m.name || i.gpu_count == 0) continue;
    double p = i.usd_per_hour / i.gpu_count;
    if (!best || p < best->first) {
      best = {p, i.gpu_count == 1 ? i.name : fmt::format("{} / {} GPUs", i.name, i.gpu_count)};
    }
  }
  return best;
}

int cmd_breakeven(const GlobalOptions& g, const BreakevenOptions& b, Io io) {
  int code = kExitOk;
  auto cfg = load_config(g, false, io, &code);
  if (!cfg) return code;
  const Catalog& cat = cfg->catalog;
  std::vector<std::string> problems;
  std::vector<std::pair<std::string, std::string>> sources;

  const GpuModel* gpu = nullptr;
  if (b.gpu) {
    gpu = cat.find_gpu(*b.gpu);
    if (!gpu) {
      std::string msg = fmt::format("--gpu: unknown GPU model {}", quote(*b.gpu));
      if (auto near = did_you_mean(*b.gpu, cat.gpu_names()))
        msg += fmt::format(" (did you mean '{}'?)", *near);
      problems.push_back(msg);
    }
  }
  placement::LocalCostInputs in;
  in.service_life_months =
      b.service_life_months.value_or(cfg->has_lab ? cfg->lab.service_life_months : 36);
  in.usd_per_kwh = b.usd_per_kwh.value_or(cfg->lab.electricity_usd_per_kwh);
  bool from_lab = false;
  if (b.hardware_usd) {
    in.hardware_usd = *b.hardware_usd;
    sources.emplace_back("hardware", "--hardware-usd");
  } else if (gpu && gpu->price_usd) {
    in.hardware_usd = *gpu->price_usd;
    sources.emplace_back("hardware", fmt::format("catalog price of one {}", gpu->name));
  } else if (gpu) {
    problems.push_back(
        fmt::format("--gpu {}: the catalog has no purchase price; give --hardware-usd", gpu->name));
  } else if (cfg->has_lab) {
    in.hardware_usd = cfg->lab.hardware_usd;
    from_lab = true;
    sources.emplace_back("hardware", "lab.hardware_usd in " + cfg->source);
  } else {
    problems.push_back("give --hardware-usd, --gpu MODEL or a config with a lab");
  }
  if (b.power_watts) {
    in.busy_watts = *b.power_watts;
  } else if (gpu && gpu->watts) {
    in.busy_watts = *gpu->watts;
  } else if (from_lab) {
    in.busy_watts = cfg->lab.busy_watts;
  } else if (!gpu) {
    problems.push_back("give --power-watts (busy power draw)");
  }
  // Idle power is the lab's only when the rest of the figures are the lab's too.
  in.idle_watts = b.idle_watts.value_or(from_lab && !b.power_watts ? cfg->lab.idle_watts : 0);
  if (in.idle_watts > in.busy_watts && problems.empty()) {
    problems.push_back(fmt::format("idle power ({:g} W) is above busy power ({:g} W)",
                                   in.idle_watts, in.busy_watts));
  }

  double cloud = 0;
  std::string cloud_source;
  if (b.cloud_usd_per_hour) {
    cloud = *b.cloud_usd_per_hour;
    cloud_source = "--cloud-usd-per-hour";
  } else if (b.vs) {
    if (const Instance* inst = cat.find_instance(*b.vs)) {
      cloud = inst->usd_per_hour;
      cloud_source = fmt::format("{} ({}, {})", inst->name, inst->provider, inst->date);
    } else if (const GpuModel* m = cat.find_gpu(*b.vs)) {
      if (auto p = per_gpu_price(cat, *m)) {
        cloud = p->first;
        cloud_source = fmt::format("one {} on {}", m->name, p->second);
      } else {
        problems.push_back(fmt::format("--vs {}: no catalog instance rents it", m->name));
      }
    } else {
      auto names = cat.instance_names();
      auto gpus = cat.gpu_names();
      names.insert(names.end(), gpus.begin(), gpus.end());
      std::string msg =
          fmt::format("--vs: {} is neither a catalog instance nor a GPU model", quote(*b.vs));
      if (auto near = did_you_mean(*b.vs, names))
        msg += fmt::format(" (did you mean '{}'?)", *near);
      problems.push_back(msg);
    }
  } else {
    problems.push_back("give --cloud-usd-per-hour or --vs INSTANCE|GPU (e.g. --vs A100-80GB)");
  }
  if (b.hours_per_day <= 0 || b.hours_per_day > 24) {
    problems.push_back(
        fmt::format("--hours-per-day must be above 0 and at most 24, got {:g}", b.hours_per_day));
  }
  if (!problems.empty()) {
    for (const auto& p : problems) io.err << "error: " << p << "\n";
    return kExitBadInput;
  }

  auto be = placement::breakeven(in, cloud, b.hours_per_day);
  std::vector<double> targets{3, 4};
  if (cfg->policy.breakeven_limit_months != 3 && cfg->policy.breakeven_limit_months != 4) {
    targets.push_back(cfg->policy.breakeven_limit_months);
  }
  if (g.format() == Format::kJson) {
    json::object o;
    o["months"] =
        be.months ? json::value(std::round(*be.months * 1000) / 1000) : json::value(nullptr);
    o["hours_per_day"] = b.hours_per_day;
    o["utilisation"] = be.utilisation;
    json::object inputs;
    inputs["hardware_usd"] = in.hardware_usd;
    inputs["busy_watts"] = in.busy_watts;
    inputs["idle_watts"] = in.idle_watts;
    inputs["electricity_usd_per_kwh"] = in.usd_per_kwh;
    inputs["cloud_usd_per_hour"] = cloud;
    inputs["cloud_price_from"] = cloud_source;
    inputs["service_life_months"] = in.service_life_months;
    o["inputs"] = std::move(inputs);
    json::object monthly;
    monthly["cloud"] = std::round(be.cloud_monthly_usd * 100) / 100;
    monthly["local_electricity"] = std::round(be.electricity_monthly_usd * 100) / 100;
    monthly["local_amortised"] = std::round(be.amortised_monthly_usd * 100) / 100;
    monthly["local_total"] = std::round(be.local_monthly_usd * 100) / 100;
    monthly["savings"] = std::round(be.savings_monthly_usd * 100) / 100;
    o["monthly_usd"] = std::move(monthly);
    json::array util;
    for (double m : targets) {
      json::object u;
      u["months"] = m;
      auto x = placement::utilisation_for_breakeven(in, cloud, m);
      u["utilisation"] = x ? json::value(std::round(*x * 10000) / 10000) : json::value(nullptr);
      u["hours_per_day"] = x ? json::value(std::round(*x * 2400) / 100) : json::value(nullptr);
      util.emplace_back(std::move(u));
    }
    o["utilisation_for_months"] = std::move(util);
    io.out << pretty_json(o);
    return kExitOk;
  }
  std::string months = be.months ? fmt::format("{:.1f} months", *be.months)
                                 : "never (the cloud costs less than the electricity)";
  io.out << fmt::format("Break-even: {} at {:g} h/day ({:.0f}% utilisation)\n\n", months,
                        b.hours_per_day, be.utilisation * 100);
  io.out << columns({
      {"monthly", "", ""},
      {"  cloud", format_usd(be.cloud_monthly_usd),
       fmt::format("{}/h x {:.0f} h ({})", format_usd(cloud), kHoursPerMonth * be.utilisation,
                   cloud_source)},
      {"  local electricity", format_usd(be.electricity_monthly_usd),
       fmt::format("{:g} W busy, {:g} W idle, {}/kWh", in.busy_watts, in.idle_watts,
                   format_usd(in.usd_per_kwh))},
      {"  local amortised", format_usd(be.amortised_monthly_usd),
       fmt::format("{} over {:g} months", format_usd(in.hardware_usd), in.service_life_months)},
      {"  local total", format_usd(be.local_monthly_usd), ""},
      {"  saved vs cloud", format_usd(be.savings_monthly_usd),
       fmt::format("cloud - electricity: pays back {} of hardware", format_usd(in.hardware_usd))},
  });
  io.out << "\nUtilisation at which the hardware pays back in:\n";
  for (double m : targets) {
    auto x = placement::utilisation_for_breakeven(in, cloud, m);
    std::string label = fmt::format(
        "{:g} months{}", m, m == cfg->policy.breakeven_limit_months ? " (policy limit)" : "");
    if (x) {
      io.out << fmt::format("  {:<26} {:.1f}% ({:.1f} h/day)\n", label, *x * 100, *x * 24);
    } else {
      io.out << fmt::format("  {:<26} not reachable\n", label);
    }
  }
  auto u3 = placement::utilisation_for_breakeven(in, cloud, 3);
  auto u4 = placement::utilisation_for_breakeven(in, cloud, 4);
  if (u3 && u4) {
    io.out << fmt::format(
        "A \"3-4 months\" break-even holds at {:.0f}-{:.0f}% utilisation ({:.1f}-{:.1f} h/day)",
        *u4 * 100, *u3 * 100, *u4 * 24, *u3 * 24);
    if (be.months)
      io.out << fmt::format("; at {:g} h/day it is {:.1f} months", b.hours_per_day, *be.months);
    io.out << ".\n";
  }
  return kExitOk;
}

}  // namespace

int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  Io io{out, err};
  CLI::App app{"hylab: run AI work where it fits best, on the lab's GPUs or in the cloud", "hylab"};
  app.fallthrough();  // global options work before or after the subcommand
  app.require_subcommand(1);
  GlobalOptions g;
  app.add_option("-c,--config", g.config,
                 "lab config (default: $HYLAB_CONFIG, then " + default_config_path() + ")");
  app.add_option("-o,--output", g.output, "output format")->check(CLI::IsMember({"table", "json"}));
  app.set_version_flag("--version", std::string("hylab ") + "0.1.0");

  PlaceOptions place;
  auto* place_cmd = app.add_subcommand("place", "decide where each job should run, and why");
  place_cmd->add_option("jobs", place.files, "job spec files (YAML)")->required();
  place_cmd->add_flag("--explain", place.explain, "print the path through the decision tree");

  auto* cost_cmd =
      app.add_subcommand("cost", "cost model: break-even, per-job estimates and the spend report");
  cost_cmd->require_subcommand(1);
  BreakevenOptions be;
  auto* be_cmd =
      cost_cmd->add_subcommand("breakeven", "months until local hardware pays for itself");
  be_cmd->add_option("--hardware-usd", be.hardware_usd, "purchase price")
      ->check(CLI::NonNegativeNumber);
  be_cmd->add_option("--power-watts", be.power_watts, "power draw when busy")
      ->check(CLI::NonNegativeNumber);
  be_cmd->add_option("--idle-watts", be.idle_watts, "power draw when idle (default 0)")
      ->check(CLI::NonNegativeNumber);
  be_cmd->add_option("--electricity-usd-per-kwh", be.usd_per_kwh, "electricity price")
      ->check(CLI::NonNegativeNumber);
  be_cmd->add_option("--cloud-usd-per-hour", be.cloud_usd_per_hour, "cloud price of the same work")
      ->check(CLI::NonNegativeNumber);
  be_cmd->add_option("--hours-per-day", be.hours_per_day, "hours of use a day (default 24)");
  be_cmd->add_option("--service-life-months", be.service_life_months, "amortisation period")
      ->check(CLI::PositiveNumber);
  be_cmd->add_option("--gpu", be.gpu, "take price and power from the catalog's GPU model");
  be_cmd->add_option("--vs", be.vs, "take the cloud price from a catalog instance or GPU model");
  std::string estimate_file;
  auto* est_cmd = cost_cmd->add_subcommand("estimate", "both sides' cost of one job");
  est_cmd->add_option("job", estimate_file, "job spec file (YAML)")->required();
  std::string report_since;
  auto* report_cmd = cost_cmd->add_subcommand(
      "report", "spend by day, environment and job, from the control plane");
  report_cmd->add_option("--since", report_since,
                         "a date (2026-11-01) or a duration back from now (7d, 12h); default: "
                         "the start of this month");

  ClientOptions client;
  app.add_option("--url", client.url,
                 "control plane URL (default: $HYLAB_URL, the running server, server.listen)");

  server::ServeOptions serve_opts;
  bool no_nvml = false;
  auto* serve_cmd =
      app.add_subcommand("serve", "run the control plane (REST API, job queue, local executor)");
  serve_cmd->add_option("--listen", serve_opts.listen,
                        "host:port to listen on (default: server.listen)");
  serve_cmd->add_flag("--no-nvml", no_nvml, "use the config's GPU inventory even where NVML works");

  RunOptions run_opts;
  auto* run_cmd = app.add_subcommand("run", "submit a job to the control plane");
  run_cmd->add_option("job", run_opts.file, "job spec file (YAML)")->required();
  run_cmd->add_flag("-f,--follow", run_opts.follow, "stream the job's output until it ends");
  run_cmd->add_option("--priority", run_opts.priority, "queue priority (-1000..1000, higher first)")
      ->check(CLI::Range(-1000, 1000));

  JobsOptions jobs_opts;
  auto* jobs_cmd = app.add_subcommand("jobs", "list jobs");
  jobs_cmd->add_option("--state", jobs_opts.state, "only jobs in this state");
  jobs_cmd->add_option("--env", jobs_opts.environment,
                       "only jobs in this environment (local, cloud, hybrid)");
  jobs_cmd->add_option("--limit", jobs_opts.limit, "at most this many (default 50)")
      ->check(CLI::Range(1, 1000));
  jobs_cmd->add_flag("--all", jobs_opts.all, "every job, page after page");

  ScheduleNextOptions sched_next;
  auto* sched_cmd = app.add_subcommand("schedule", "cron schedules");
  sched_cmd->require_subcommand(1);
  auto* sched_next_cmd = sched_cmd->add_subcommand(
      "next", "the next firings of a cron expression (cronie's rules, DST included)");
  sched_next_cmd
      ->add_option("expression", sched_next.expression,
                   "five fields (\"0 2 * * 0\") or @daily, @hourly, ...")
      ->required();
  sched_next_cmd->add_option("--tz", sched_next.timezone, "IANA time zone (default UTC)");
  sched_next_cmd->add_option("--from", sched_next.from,
                             "start after this RFC 3339 time (default: now)");
  sched_next_cmd->add_option("-n", sched_next.count, "how many firings (default 5)")
      ->check(CLI::Range(1, 10000));

  std::string logs_id;
  bool logs_follow = false;
  auto* logs_cmd = app.add_subcommand("logs", "print a job's output");
  logs_cmd->add_option("id", logs_id, "job id")->required();
  logs_cmd->add_flag("-f,--follow", logs_follow, "keep printing until the job ends");

  std::string cancel_id;
  auto* cancel_cmd =
      app.add_subcommand("cancel", "cancel a job (SIGTERM, then SIGKILL after the grace period)");
  cancel_cmd->add_option("id", cancel_id, "job id")->required();

  auto* status_cmd = app.add_subcommand("status", "the control plane, its GPU inventory and queue");

  gateway::GatewayOptions gw_opts;
  auto* gateway_cmd =
      app.add_subcommand("gateway", "run the inference gateway (local first, cloud overflow)");
  gateway_cmd->add_option("--port-file", gw_opts.port_file,
                          "write the bound ports here as JSON once listening");
  std::optional<std::string> stats_admin;
  auto* stats_cmd =
      gateway_cmd->add_subcommand("stats", "the running gateway's counters, from its admin port");
  stats_cmd->add_option("--admin", stats_admin, "admin host:port (default: gateway.admin)");

  DataCommand data;
  data.add(app);

  std::vector<std::string> rest(args.begin() + (args.empty() ? 0 : 1), args.end());
  std::reverse(rest.begin(), rest.end());  // CLI11 takes arguments in reverse order
  try {
    app.parse(rest);
  } catch (const CLI::CallForHelp& e) {
    out << app.help();
    return kExitOk;
  } catch (const CLI::CallForAllHelp& e) {
    out << app.help("", CLI::AppFormatMode::All);
    return kExitOk;
  } catch (const CLI::CallForVersion& e) {
    out << e.what() << "\n";
    return kExitOk;
  } catch (const CLI::ParseError& e) {
    err << "error: " << e.what() << "\n";
    err << "Run 'hylab --help' for usage.\n";
    return kExitBadInput;
  }
  try {
    if (place_cmd->parsed()) return cmd_place(g, place, io);
    if (be_cmd->parsed()) return cmd_breakeven(g, be, io);
    if (est_cmd->parsed()) return cmd_estimate(g, estimate_file, io);
    if (sched_next_cmd->parsed())
      return cmd_schedule_next(sched_next, g.format() == Format::kJson, out, err);
    client.json = g.format() == Format::kJson;
    bool needs_config = serve_cmd->parsed() || (gateway_cmd->parsed() && !stats_cmd->parsed());
    int code = kExitOk;
    auto cfg = load_config(g, needs_config, io, &code);
    if (!cfg) return code;
    if (serve_cmd->parsed()) {
      serve_opts.use_nvml = !no_nvml;
      if (!args.empty()) serve_opts.exe = args.front();
      return server::run_serve(*cfg, serve_opts, out, err);
    }
    if (data.parsed()) return data.run(*cfg, client.json, out, err);
    if (stats_cmd->parsed()) return cmd_gateway_stats(*cfg, stats_admin, client.json, out, err);
    if (gateway_cmd->parsed()) return gateway::run_gateway(*cfg, gw_opts, out, err);
    if (run_cmd->parsed()) return cmd_run(*cfg, client, run_opts, out, err);
    if (jobs_cmd->parsed()) return cmd_jobs(*cfg, client, jobs_opts, out, err);
    if (logs_cmd->parsed()) return cmd_logs(*cfg, client, logs_id, logs_follow, out, err);
    if (cancel_cmd->parsed()) return cmd_cancel(*cfg, client, cancel_id, out, err);
    if (status_cmd->parsed()) return cmd_status(*cfg, client, out, err);
    if (report_cmd->parsed()) return cmd_cost_report(*cfg, client, report_since, out, err);
  } catch (const std::exception& e) {
    err << "error: " << e.what() << "\n";
    return kExitFailure;
  }
  err << "error: no command given. Run 'hylab --help' for usage.\n";
  return kExitBadInput;
}

}  // namespace hylab::cli
