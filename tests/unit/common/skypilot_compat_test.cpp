// The compatibility suite: SkyPilot's own task files (tests/data/skypilot, copied unchanged
// under Apache-2.0; SOURCE.md says from where), each read the way SkyPilot reads it. Every
// file loads (none refused for valid SkyPilot syntax), and what hylab parsed matches what
// the file says (expected.json, written from the files by hand): the documents, every
// accelerator alternative, node count, spot, pins and services. Each is then placed, or
// answered "cannot place" with a reason.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <filesystem>
#include <set>

#include "../test_util.h"
#include "common/job_spec.h"
#include "common/text.h"
#include "placement/engine.h"

namespace hylab {
namespace {

namespace json = boost::json;
using ::testing::HasSubstr;

const std::string kDir = std::string(HYLAB_SOURCE_DIR) + "/tests/data/skypilot";

json::array expected() {
  auto text = read_text_file(kDir + "/expected.json", 1 << 22);
  EXPECT_TRUE(text) << (text ? "" : text.error().message);
  return text ? json::parse(*text).as_array() : json::array{};
}

std::string canonical(const std::string& model) {
  if (model.empty() || std::isdigit(static_cast<unsigned char>(model[0]))) return "";
  const GpuModel* m = builtin_catalog().find_gpu(model);
  return m ? m->name : "?" + model;
}

// Every alternative, as the file writes them and as hylab parsed them: the same set.
std::set<std::pair<std::string, int>> parsed_alternatives(const JobSpec& s) {
  std::set<std::pair<std::string, int>> out;
  for (const auto& a : s.accelerators) out.insert({a.model, a.count});
  return out;
}

std::set<std::pair<std::string, int>> written_alternatives(const json::value& doc) {
  std::set<std::pair<std::string, int>> out;
  for (const auto& a : doc.at("accelerators").as_array()) {
    const auto& pair = a.as_array();
    out.insert({canonical(std::string(pair.at(0).as_string())),
                static_cast<int>(pair.at(1).to_number<double>())});
  }
  return out;
}

std::set<std::string> pinned(const JobSpec& s, bool region) {
  std::set<std::string> out;
  auto add = [&](const Pin& p) {
    if (region) {
      if (p.region) out.insert(*p.region);
    } else if (p.provider != "*") {
      out.insert(p.provider);
    }
  };
  for (const auto& p : s.pins) add(p);
  for (const auto& a : s.accelerators) {
    if (a.pin) add(*a.pin);
  }
  return out;
}

TEST(SkyPilotCompatibility, AtLeastFortyFilesWithTheirLicense) {
  EXPECT_GE(expected().size(), 40U);
  auto license = read_text_file(kDir + "/LICENSE", 1 << 20);
  ASSERT_TRUE(license);
  EXPECT_THAT(*license, HasSubstr("Apache License"));
  // Every file in the folder is checked.
  std::set<std::string> listed;
  for (const auto& e : expected()) listed.insert(std::string(e.at("file").as_string()));
  for (const auto& f : std::filesystem::directory_iterator(kDir)) {
    if (f.path().extension() == ".yaml") {
      EXPECT_TRUE(listed.count(f.path().filename().string()))
          << f.path() << " is not in expected.json";
    }
  }
}

TEST(SkyPilotCompatibility, EachFileLoadsAsItSaysAndIsPlacedOrAnsweredWithAReason) {
  Config cfg = testing::config_from(testing::kTwoGpuLab);
  for (const auto& entry : expected()) {
    std::string file = std::string(entry.at("file").as_string());
    SCOPED_TRACE(file);
    Diagnostics diag;
    auto p = load_pipeline_file(kDir + "/" + file, cfg.catalog, diag);
    ASSERT_TRUE(p) << diag.str();
    EXPECT_FALSE(diag.has_errors()) << diag.str();
    std::vector<const json::value*> docs;
    bool header = false;
    for (const auto& d : entry.at("documents").as_array()) {
      if (d.as_object().contains("header_only") && d.at("header_only").as_bool()) {
        header = true;
        continue;
      }
      docs.push_back(&d);
    }
    EXPECT_EQ(p->header, header);
    ASSERT_EQ(p->jobs.size(), docs.size()) << "documents";
    for (std::size_t i = 0; i < docs.size(); ++i) {
      const json::value& doc = *docs[i];
      const JobSpec& s = p->jobs[i];
      SCOPED_TRACE("document " + std::to_string(i + 1));
      if (doc.at("name").is_string()) {
        EXPECT_EQ(s.name, doc.at("name").as_string());
      }
      if (doc.at("num_nodes").is_number()) {
        EXPECT_EQ(s.num_nodes, doc.at("num_nodes").to_number<int>());
      }
      EXPECT_EQ(parsed_alternatives(s), written_alternatives(doc));
      const auto& kind = doc.at("alternatives_kind").as_string();
      if (kind == "list" || kind == "ordered") {
        EXPECT_TRUE(s.ordered);
      } else if (kind == "set" || kind == "any_of") {
        EXPECT_FALSE(s.ordered);
      }
      if (doc.at("use_spot").is_bool()) {
        bool want = doc.at("use_spot").as_bool();
        bool all = !s.accelerators.empty();
        for (const auto& a : s.accelerators) all = all && a.use_spot == want;
        EXPECT_TRUE(s.use_spot == want || all) << "use_spot";
      } else {
        EXPECT_FALSE(s.use_spot.has_value()) << "use_spot";
      }
      if (doc.at("cloud").is_string()) {
        EXPECT_TRUE(pinned(s, false).count(to_lower(std::string(doc.at("cloud").as_string()))))
            << "cloud " << doc.at("cloud");
      }
      if (doc.at("region").is_string()) {
        EXPECT_TRUE(pinned(s, true).count(std::string(doc.at("region").as_string())))
            << "region " << doc.at("region");
      }
      EXPECT_EQ(s.service, doc.at("service").as_bool());
      placement::Decision d = placement::decide(s, cfg);
      ASSERT_FALSE(d.reasons.empty());
      if (!d.placeable) {
        EXPECT_THAT(d.reasons.front() + d.reasons.back(), HasSubstr("cannot place"));
      }
      if (s.service) {  // on spot only where the file asks for it
        bool asked = s.use_spot.value_or(false);
        for (const auto& a : s.accelerators) asked = asked || a.use_spot.value_or(false);
        EXPECT_FALSE(d.spot && !asked) << "a service on spot";
      }
    }
  }
}

}  // namespace
}  // namespace hylab
