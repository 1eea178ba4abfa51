// The hylab command line, in process (run()) and as the real binary.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <boost/json.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "cli/app.h"

namespace hylab::cli {
namespace {

using ::testing::ContainsRegex;
using ::testing::HasSubstr;
namespace json = boost::json;

const std::string kSrc = HYLAB_SOURCE_DIR;
const std::string kConfig = kSrc + "/examples/hylab.yaml";

struct Outcome {
  int code;
  std::string out;
  std::string err;
};

Outcome hylab(std::vector<std::string> args) {
  args.insert(args.begin(), "hylab");
  std::ostringstream out;
  std::ostringstream err;
  int code = run(args, out, err);
  return {code, out.str(), err.str()};
}

class TempDir {
 public:
  TempDir() {
    path_ = std::filesystem::temp_directory_path() /
            ("hylab-cli-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string write(const std::string& name, const std::string& text) const {
    auto p = path_ / name;
    std::ofstream(p) << text;
    return p.string();
  }

 private:
  static inline int counter_ = 0;
  std::filesystem::path path_;
};

TEST(CliPlace, PlacesEveryExampleWithATable) {
  Outcome o =
      hylab({"place", "--config", kConfig, kSrc + "/examples/jobs/llm-pretrain.yaml",
             kSrc + "/examples/jobs/notebook-dev.yaml", kSrc + "/examples/jobs/chat-serving.yaml"});
  EXPECT_EQ(o.code, 0) << o.err;
  EXPECT_THAT(o.out, HasSubstr("JOB"));
  EXPECT_THAT(o.out, ContainsRegex("llm-pretrain +cloud +beyond-capacity +yes"));
  EXPECT_THAT(o.out, ContainsRegex("notebook-dev +local +development +no"));
  EXPECT_THAT(o.out, ContainsRegex("chat-serving +hybrid +production-inference +no"));
  EXPECT_THAT(
      o.err,
      HasSubstr(
          "chat-serving.yaml:5:3: warning: resources.ports: not acted on: no port is opened"));
}

TEST(CliPlace, JsonHasTheDocumentedFields) {
  // -o before the subcommand, --config after it.
  Outcome o = hylab(
      {"-o", "json", "place", kSrc + "/examples/jobs/patient-records.yaml", "--config", kConfig});
  ASSERT_EQ(o.code, 0) << o.err;
  json::value v = json::parse(o.out);
  ASSERT_TRUE(v.is_array());
  const json::object& d = v.as_array().at(0).as_object();
  EXPECT_EQ(d.at("name").as_string(), "patient-records");
  EXPECT_EQ(d.at("environment").as_string(), "local");
  EXPECT_EQ(d.at("rule").as_string(), "sensitive-data");
  EXPECT_EQ(d.at("spot").as_bool(), false);
  EXPECT_EQ(d.at("placeable").as_bool(), true);
  EXPECT_FALSE(d.at("reasons").as_array().empty());
  EXPECT_EQ(d.at("path").as_array().at(0).at("inputs").at("data.sensitivity").as_string(),
            "regulated");
  const json::object& cost = d.at("cost").as_object();
  EXPECT_TRUE(cost.at("local").at("fits").as_bool());
  EXPECT_GT(cost.at("local").at("usd").to_number<double>(), 0);
  EXPECT_EQ(cost.at("cloud").at("instance").as_string(), "m5.8xlarge");
  EXPECT_NEAR(cost.at("cloud").at("usd_on_demand").to_number<double>(), 15.36, 1e-9);
  EXPECT_EQ(d.at("matrix_cell").as_string(), "> threshold, sensitive: local (with cloud backup)");
}

TEST(CliPlace, ExplainPrintsThePath) {
  Outcome o =
      hylab({"place", "--explain", kSrc + "/examples/jobs/lora-weekly.yaml", "-c", kConfig});
  ASSERT_EQ(o.code, 0) << o.err;
  EXPECT_THAT(o.out, HasSubstr("1. Is data sensitive or regulated?  no  -> continue"));
  EXPECT_THAT(o.out, HasSubstr("3. Is compute requirement > local capacity?  no  -> continue"));
  EXPECT_THAT(o.out, HasSubstr("8. Otherwise  yes  -> local"));
  EXPECT_THAT(o.out, HasSubstr("=> local by rule default-local"));
  EXPECT_THAT(o.out, HasSubstr("local: $1.81 on 2x RTX4090 (100% of the lab) for 5h"));
}

TEST(CliPlace, BadInputExitsTwoAndReportsEveryError) {
  TempDir dir;
  std::string bad =
      dir.write("bad.yaml", "catgory: training\nresources:\n  accelerators: A100:0\n");
  std::string good = kSrc + "/examples/jobs/notebook-dev.yaml";
  Outcome o = hylab({"place", "-c", kConfig, bad, good});
  EXPECT_EQ(o.code, 2);
  EXPECT_THAT(o.err,
              HasSubstr(bad + ":1:1: error: catgory: unknown key (did you mean 'category'?)"));
  EXPECT_THAT(
      o.err,
      HasSubstr(bad + ":3:17: error: resources.accelerators: GPU count must be at least 1, got 0"));
  EXPECT_THAT(o.out, HasSubstr("notebook-dev"));  // the good file is still placed
}

TEST(CliPlace, CannotPlaceExitsThree) {
  TempDir dir;
  std::string f = dir.write(
      "secret.yaml",
      "name: secret-train\nresources: {accelerators: H100:8}\ndata: {sensitivity: regulated}\n");
  Outcome o = hylab({"place", "-c", kConfig, f});
  EXPECT_EQ(o.code, 3);
  EXPECT_THAT(o.out, HasSubstr("CANNOT PLACE"));
  EXPECT_THAT(o.err,
              HasSubstr("error: secret-train: cannot place: regulated data never leaves the lab"));
}

TEST(CliPlace, BadConfigAndMissingConfig) {
  TempDir dir;
  std::string cfg = dir.write("lab.yaml", "lab:\n  gpus: [{model: RTX4900}]\n");
  Outcome o = hylab({"place", "-c", cfg, kSrc + "/examples/jobs/notebook-dev.yaml"});
  EXPECT_EQ(o.code, 2);
  EXPECT_THAT(o.err, HasSubstr(cfg + ":2:18: error: lab.gpus[0].model: unknown GPU model 'RTX4900' "
                                     "(did you mean 'RTX4090'?)"));
  Outcome missing = hylab(
      {"place", "-c", dir.write("x", "") + ".nope", kSrc + "/examples/jobs/notebook-dev.yaml"});
  EXPECT_EQ(missing.code, 2);
  EXPECT_THAT(missing.err, HasSubstr("cannot open: No such file or directory"));
}

TEST(CliPlace, UsageErrorsExitTwo) {
  EXPECT_EQ(hylab({}).code, 2);
  EXPECT_EQ(hylab({"place"}).code, 2);
  EXPECT_EQ(hylab({"-o", "xml", "place", "x.yaml"}).code, 2);
  EXPECT_EQ(hylab({"--help"}).code, 0);
}

TEST(CliCost, GuideBreakevenIsUnderOneMonthAndShowsTheUtilisationFor3To4) {
  Outcome o = hylab({"cost", "breakeven", "--hardware-usd", "1600", "--power-watts", "450",
                     "--electricity-usd-per-kwh", "0.15", "--cloud-usd-per-hour", "2.50",
                     "--hours-per-day", "24", "-o", "json"});
  ASSERT_EQ(o.code, 0) << o.err;
  json::value v = json::parse(o.out);
  EXPECT_NEAR(v.at("months").to_number<double>(), 0.901, 1e-3);
  EXPECT_NEAR(v.at("monthly_usd").at("cloud").to_number<double>(), 1825, 1e-9);
  EXPECT_NEAR(v.at("monthly_usd").at("local_electricity").to_number<double>(), 49.28, 1e-9);
  const auto& util = v.at("utilisation_for_months").as_array();
  EXPECT_EQ(util.at(0).at("months").to_number<double>(), 3);
  EXPECT_NEAR(util.at(0).at("utilisation").to_number<double>(), 0.3003, 1e-4);
  EXPECT_NEAR(util.at(1).at("utilisation").to_number<double>(), 0.2253, 1e-4);

  Outcome text = hylab({"cost", "breakeven", "--hardware-usd", "1600", "--power-watts", "450",
                        "--electricity-usd-per-kwh", "0.15", "--cloud-usd-per-hour", "2.50"});
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr("Break-even: 0.9 months at 24 h/day (100% utilisation)"));
  EXPECT_THAT(text.out,
              HasSubstr("A \"3-4 months\" break-even holds at 23-30% utilisation (5.4-7.2 h/day)"));
}

TEST(CliCost, FlagsLeftOutComeFromTheCatalog) {
  Outcome o = hylab({"cost", "breakeven", "--gpu", "RTX4090", "--vs", "A100-80GB", "-o", "json"});
  ASSERT_EQ(o.code, 0) << o.err;
  json::value v = json::parse(o.out);
  EXPECT_EQ(v.at("inputs").at("hardware_usd").to_number<double>(), 1600);
  EXPECT_EQ(v.at("inputs").at("busy_watts").to_number<double>(), 450);
  EXPECT_EQ(v.at("inputs").at("cloud_usd_per_hour").to_number<double>(), 2.5);
  EXPECT_NEAR(v.at("months").to_number<double>(), 0.901, 1e-3);
  Outcome inst =
      hylab({"cost", "breakeven", "--gpu", "RTX4090", "--vs", "p4d.24xlarge", "-o", "json"});
  EXPECT_EQ(json::parse(inst.out).at("inputs").at("cloud_usd_per_hour").to_number<double>(), 32.77);
}

TEST(CliCost, BreakevenErrors) {
  Outcome o = hylab({"cost", "breakeven", "--gpu", "RTX4900"});
  EXPECT_EQ(o.code, 2);
  EXPECT_THAT(o.err, HasSubstr("--gpu: unknown GPU model 'RTX4900' (did you mean 'RTX4090'?)"));
  EXPECT_THAT(o.err, HasSubstr("give --cloud-usd-per-hour or --vs"));
  EXPECT_EQ(hylab({"cost", "breakeven", "--hardware-usd", "-5"}).code, 2);
  Outcome hpd =
      hylab({"cost", "breakeven", "--gpu", "RTX4090", "--vs", "A100", "--hours-per-day", "25"});
  EXPECT_EQ(hpd.code, 2);
  EXPECT_THAT(hpd.err, HasSubstr("--hours-per-day must be above 0 and at most 24, got 25"));
}

TEST(CliCost, EstimateShowsBothSides) {
  Outcome o = hylab({"cost", "estimate", kSrc + "/examples/jobs/llm-pretrain.yaml", "-c", kConfig});
  ASSERT_EQ(o.code, 0) << o.err;
  EXPECT_THAT(o.out, HasSubstr("llm-pretrain: placed cloud on spot (rule beyond-capacity)"));
  EXPECT_THAT(o.out, HasSubstr("local: does not fit"));
  EXPECT_THAT(o.out, HasSubstr("cloud: $4,718.88 on-demand, $1,415.66 spot"));
  Outcome j = hylab(
      {"-o", "json", "cost", "estimate", kSrc + "/examples/jobs/llm-pretrain.yaml", "-c", kConfig});
  json::value v = json::parse(j.out);
  EXPECT_EQ(v.at("cost").at("cloud").at("count").to_number<int>(), 2);
}

// The real binary: what `make run` runs, and its exit codes.
int run_binary(const std::string& args, std::string* out) {
  std::string cmd = std::string(HYLAB_BINARY) + " " + args + " 2>/dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out->append(buf, n);
  int status = ::pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(CliBinary, PlacesAllExamplesLikeMakeRun) {
  std::string out;
  EXPECT_EQ(run_binary("--config " + kConfig + " place " + kSrc + "/examples/jobs/*.yaml", &out),
            0);
  for (const auto& entry : std::filesystem::directory_iterator(kSrc + "/examples/jobs")) {
    // A pipeline's jobs read "PIPELINE/JOB", a decision per document.
    std::string stem = entry.path().stem().string();
    EXPECT_TRUE(out.find(stem + " ") != std::string::npos ||
                out.find(stem + "/") != std::string::npos)
        << stem << " in\n"
        << out;
  }
  std::string json_out;
  EXPECT_EQ(run_binary("-o json place --config " + kConfig + " " + kSrc + "/examples/jobs/*.yaml",
                       &json_out),
            0);
  auto v = json::parse(json_out);
  std::set<std::string> envs;
  for (const auto& d : v.as_array()) envs.insert(std::string(d.at("environment").as_string()));
  EXPECT_EQ(envs, (std::set<std::string>{"local", "cloud", "hybrid"}));
  // The pipeline: one decision per document, each placed on its own.
  EXPECT_THAT(out, HasSubstr("weekly-model/prepare"));
  EXPECT_THAT(out, HasSubstr("weekly-model/train"));
  EXPECT_THAT(out, HasSubstr("weekly-model/evaluate"));
}

TEST(CliBinary, ExitCodes) {
  TempDir dir;
  std::string out;
  EXPECT_EQ(run_binary("place -c " + kConfig + " " + dir.write("b.yaml", "hours: soon\n"), &out),
            2);
  EXPECT_EQ(
      run_binary(
          "place -c " + kConfig + " " +
              dir.write("s.yaml",
                        "resources: {accelerators: H100:8}\ndata: {sensitivity: sensitive}\n"),
          &out),
      3);
}

}  // namespace
}  // namespace hylab::cli
