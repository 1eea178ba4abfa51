// SkyPilot's ways of writing resources, read as SkyPilot reads them: counts of any model,
// any_of/ordered alternatives, cloud/infra/region pins, services, memory forms, and
// pipelines of several documents.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "../test_util.h"
#include "common/job_spec.h"

namespace hylab {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::spec_errors;
using testing::spec_from;
using testing::spec_warnings;

TEST(SkyPilotForms, ACountAloneIsThatManyGpusOfAnyModel) {
  for (const char* yaml : {"resources: {accelerators: 1}\n", "resources: {accelerators: '4'}\n"}) {
    JobSpec s = spec_from(yaml);
    ASSERT_EQ(s.accelerators.size(), 1U) << yaml;
    EXPECT_TRUE(s.accelerators[0].any_model());
  }
  EXPECT_EQ(spec_from("resources: {accelerators: 4}\n").accelerators[0].count, 4);
  EXPECT_THAT(spec_errors("resources: {accelerators: 0}\n"), HasSubstr("at least 1, got 0"));
  EXPECT_THAT(spec_errors("resources: {accelerators: -2}\n"), HasSubstr("at least 1, got -2"));
  EXPECT_THAT(spec_errors("resources: {accelerators: 1.5}\n"), HasSubstr("fractional GPU count"));
}

TEST(SkyPilotForms, TheAcceleratorsOfSkyPilotsExamplesAreKnown) {
  for (const char* model : {"A10", "A40", "L40", "B200", "GH200", "MI300", "MI210", "tpu-v2-32",
                            "tpu-v6e-4", "tpu-v5litepod-8", "Inferentia", "Trainium2"}) {
    JobSpec s = spec_from(std::string("resources: {accelerators: ") + model + "}\n");
    EXPECT_EQ(s.accelerators.size(), 1U) << model;
  }
  EXPECT_EQ(spec_from("resources: {accelerators: MI300:4}\n").accelerators.at(0).model, "MI300X");
}

TEST(SkyPilotForms, GpusIsAnotherNameForAccelerators) {
  EXPECT_EQ(spec_from("resources: {gpus: H100:8}\n").accelerators.at(0).count, 8);
  EXPECT_THAT(spec_errors("resources: {gpus: H100:8, accelerators: A100:8}\n"),
              HasSubstr("give accelerators or gpus, not both"));
}

TEST(SkyPilotForms, AListIsInOrderOfPreferenceASetIsNot) {
  JobSpec list = spec_from("resources:\n  accelerators: [L4:1, H100:1, A100:1]\n");
  EXPECT_TRUE(list.ordered);
  ASSERT_EQ(list.accelerators.size(), 3U);
  EXPECT_EQ(list.accelerators[1].model, "H100");
  JobSpec set = spec_from("resources:\n  accelerators: {L4:1, H100:1, A100:1}\n");
  EXPECT_FALSE(set.ordered);
  EXPECT_EQ(set.accelerators.size(), 3U);
}

TEST(SkyPilotForms, AnyOfEntriesAreAlternativesOverTheJobsFields) {
  JobSpec s = spec_from(R"(resources:
  accelerators: A100:8
  use_spot: true
  any_of:
    - infra: aws/us-west-2
      accelerators: H100:8
    - infra: gcp
    - cloud: azure
      region: eastus
      use_spot: false
)");
  EXPECT_FALSE(s.ordered);
  ASSERT_EQ(s.accelerators.size(), 3U);
  EXPECT_EQ(s.accelerators[0].model, "H100");
  EXPECT_EQ(s.accelerators[0].pin, (Pin{"aws", "us-west-2"}));
  EXPECT_EQ(s.accelerators[0].origin, "resources.any_of[0]");
  EXPECT_EQ(s.accelerators[1].model, "A100");  // the job's accelerators
  EXPECT_EQ(s.accelerators[1].pin, (Pin{"gcp", std::nullopt}));
  EXPECT_EQ(s.accelerators[1].use_spot, true);   // the job's
  EXPECT_EQ(s.accelerators[2].use_spot, false);  // its own
  EXPECT_EQ(s.accelerators[2].pin, (Pin{"azure", "eastus"}));
}

TEST(SkyPilotForms, OrderedKeepsTheOrderAndCpuOnlyAlternativesArePins) {
  JobSpec s = spec_from(
      "resources:\n  ordered:\n    - infra: aws/us-east-1\n    - infra: "
      "aws/us-west-2\n");
  EXPECT_TRUE(s.ordered);
  EXPECT_TRUE(s.accelerators.empty());
  ASSERT_EQ(s.pins.size(), 2U);
  EXPECT_EQ(s.pins[1], (Pin{"aws", "us-west-2"}));
  EXPECT_THAT(
      spec_errors("resources:\n  any_of: [{cloud: aws}]\n  ordered: [{cloud: gcp}]\n"),
      HasSubstr("job.yaml:3:12: error: resources.ordered: give any_of or ordered, not both"));
  EXPECT_THAT(spec_errors("resources:\n  any_of: {cloud: aws}\n"),
              HasSubstr("resources.any_of: expected a list of resources"));
  // An entry's own CPUs and memory are its; a key that is not per alternative is named.
  JobSpec own = spec_from(
      "resources:\n  any_of:\n    - {accelerators: A100, cpus: 8+, memory: "
      "64}\n");
  EXPECT_EQ(own.accelerators.at(0).cpus, 8);
  EXPECT_EQ(own.accelerators.at(0).memory_bytes, 64ULL << 30);
  EXPECT_THAT(spec_warnings("resources:\n  any_of:\n    - {accelerators: A100, disk_size: 8}\n"),
              HasSubstr("job.yaml:3:28: warning: resources.any_of[0].disk_size: not acted on: not "
                        "read per alternative"));
  EXPECT_THAT(spec_errors("resources:\n  any_of:\n    - {acelerators: A100}\n"),
              HasSubstr("resources.any_of[0].acelerators: unknown key (did you mean "
                        "'accelerators'?)"));
}

TEST(SkyPilotForms, CloudInfraAndRegionPinTheJob) {
  EXPECT_EQ(spec_from("resources: {cloud: AWS}\n").pins, (std::vector<Pin>{{"aws", std::nullopt}}));
  EXPECT_EQ(spec_from("resources: {cloud: gcp, region: us-central1}\n").pins,
            (std::vector<Pin>{{"gcp", "us-central1"}}));
  EXPECT_EQ(spec_from("resources: {region: us-east-1}\n").pins,
            (std::vector<Pin>{{"*", "us-east-1"}}));
  EXPECT_EQ(spec_from("resources: {infra: k8s}\n").pins,
            (std::vector<Pin>{{"kubernetes", std::nullopt}}));
  EXPECT_EQ(spec_from("resources: {infra: k8s/my-context}\n").pins,
            (std::vector<Pin>{{"kubernetes", "my-context"}}));
  EXPECT_EQ(spec_from("resources: {infra: '*/us-east-1'}\n").pins,
            (std::vector<Pin>{{"*", "us-east-1"}}));
  EXPECT_TRUE(spec_from("resources: {infra: '*'}\n").pins.empty());
  EXPECT_THAT(spec_warnings("resources: {infra: aws/us-east-1/us-east-1a}\n"),
              HasSubstr("job.yaml:1:20: warning: resources.infra: zone us-east-1a: not a "
                        "constraint: the job may run in any zone of us-east-1"));
  EXPECT_EQ(spec_from("resources: {infra: aws/*/us-east-1a}\n").pins,
            (std::vector<Pin>{{"aws", std::nullopt}}));
  EXPECT_THAT(spec_errors("resources: {infra: aws//x}\n"),
              HasSubstr("job.yaml:1:20: error: resources.infra: expected CLOUD, CLOUD/REGION"));
  EXPECT_THAT(spec_errors("resources: {infra: aws, cloud: aws}\n"),
              HasSubstr("give infra, or cloud and region, not both"));
  EXPECT_THAT(spec_warnings("resources: {cloud: paperspace}\n"),
              HasSubstr("resources.cloud: the catalog has no prices for cloud 'paperspace'"));
}

TEST(SkyPilotForms, MemoryAndDiskAsSkyPilotWritesThem) {
  EXPECT_EQ(spec_from("resources: {memory: 32+}\n").memory_bytes, 32ULL << 30);
  EXPECT_EQ(spec_from("resources: {memory: 64GB}\n").memory_bytes, 64ULL << 30);
  EXPECT_EQ(spec_from("resources: {memory: 1024MB+}\n").memory_bytes, 1ULL << 30);
  EXPECT_EQ(spec_from("resources: {memory: 16GiB}\n").memory_bytes, 16ULL << 30);
  JobSpec ratio = spec_from("resources: {memory: 8x, cpus: 4+}\n");
  EXPECT_FALSE(ratio.memory_bytes);
  EXPECT_EQ(ratio.memory_per_cpu_gib, 8);
  EXPECT_THAT(spec_errors("resources: {memory: 0x}\n"), HasSubstr("expected GiB per vCPU"));
  EXPECT_EQ(spec_from("resources: {disk_size: 256}\n").disk_bytes, 256ULL << 30);
  EXPECT_EQ(spec_from("resources: {disk_size: 1TB}\n").disk_bytes, 1ULL << 40);
}

TEST(SkyPilotForms, AServiceIsAContinuousInferenceServiceWithEachKeyNamed) {
  JobSpec s = spec_from(R"(service:
  readiness_probe: /v1/models
  replicas: 2
  replica_policy: {min_replicas: 1, max_replicas: 3}
resources: {accelerators: L4:1}
)");
  EXPECT_TRUE(s.service);
  EXPECT_EQ(s.category, Category::kInference);
  EXPECT_EQ(s.pattern, Pattern::kContinuous);
  EXPECT_FALSE(s.use_spot);
  std::string w = spec_warnings(
      "service:\n  readiness_probe: /health\n  replicas: 2\n  replica_policy: {min_replicas: 1}\n"
      "  pool: x\n");
  EXPECT_THAT(w, HasSubstr("job.yaml:2:3: warning: service.readiness_probe: not acted on: not "
                           "probed"));
  EXPECT_THAT(w, HasSubstr("job.yaml:3:3: warning: service.replicas: not acted on: one replica"));
  EXPECT_THAT(w, HasSubstr("job.yaml:4:3: warning: service.replica_policy: not acted on: no "
                           "autoscaling"));
  EXPECT_THAT(w, HasSubstr("job.yaml:5:3: warning: service.pool: not acted on"));
  // The file's own words win.
  JobSpec batch = spec_from("service: {replicas: 1}\ncategory: training\npattern: one-time\n");
  EXPECT_EQ(batch.category, Category::kTraining);
  EXPECT_EQ(batch.pattern, Pattern::kOneTime);
  EXPECT_THAT(spec_errors("service: [a]\n"), HasSubstr("service: expected a mapping"));
}

TEST(Pipelines, SeveralDocumentsAreAChainWithTheHeadersName) {
  Diagnostics d;
  auto p = load_pipeline_text(R"(name: gpt2-pipeline
---
name: data
resources: {cpus: 8}
run: python data.py
---
resources: {accelerators: A100:8}
run: python train.py
...
---
# a document of comments only is no job
)",
                              "gpt2.yaml", builtin_catalog(), d);
  ASSERT_TRUE(p) << d.str();
  EXPECT_TRUE(p->header);
  EXPECT_EQ(p->name, "gpt2-pipeline");
  ASSERT_EQ(p->jobs.size(), 2U);
  EXPECT_TRUE(p->chain());
  EXPECT_EQ(p->jobs[0].name, "data");
  EXPECT_EQ(p->jobs[1].name, "gpt2-pipeline-2");
  EXPECT_EQ(p->jobs[1].accelerators.at(0).count, 8);
  EXPECT_THAT(p->texts[1], HasSubstr("python train.py"));
  EXPECT_THAT(p->texts[1], Not(HasSubstr("data.py")));
  // Each document's text loads alone, as the server stores it.
  Diagnostics again;
  EXPECT_TRUE(load_job_spec_text(p->texts[0], "gpt2.yaml", builtin_catalog(), again));
}

TEST(Pipelines, AJobGroupHeaderStartsItsJobsTogether) {
  Diagnostics d;
  auto p = load_pipeline_text(
      "name: group\nexecution: parallel\nprimary_tasks: [a]\n---\nname: a\nrun: x\n---\n"
      "name: b\nworkdir: {url: 'https://example.com/r.git', ref: main}\nrun: y\n",
      "g.yaml", builtin_catalog(), d);
  ASSERT_TRUE(p) << d.str();
  EXPECT_TRUE(p->header);
  EXPECT_TRUE(p->parallel);
  EXPECT_EQ(p->name, "group");
  EXPECT_EQ(p->jobs.size(), 2U);
  EXPECT_THAT(d.str(), HasSubstr("g.yaml:3:1: warning: primary_tasks: not acted on: every job of "
                                 "the group runs to its own end"));
  EXPECT_THAT(d.str(), HasSubstr("g.yaml:9:10: warning: workdir: not acted on: a git repository"));
  EXPECT_FALSE(p->jobs[1].workdir);
  Diagnostics bad;
  EXPECT_FALSE(load_pipeline_text("name: g\nexecution: sideways\n---\nrun: x\n---\nrun: y\n",
                                  "g.yaml", builtin_catalog(), bad));
  EXPECT_THAT(bad.str(), HasSubstr("g.yaml:2:12: error: execution:"));
}

TEST(Pipelines, ErrorsNameTheLineInTheFileAndOneJobIsAPipelineOfOne) {
  Diagnostics d;
  auto p = load_pipeline_text("name: a\nrun: x\n---\nname: b\nresources: {acelerators: A100}\n",
                              "p.yaml", builtin_catalog(), d);
  EXPECT_FALSE(p);
  EXPECT_THAT(d.str(), HasSubstr("p.yaml:5:13: error: resources.acelerators: unknown key"));
  Diagnostics one;
  auto single = load_pipeline_text("---\nname: solo\nrun: x\n", "s.yaml", builtin_catalog(), one);
  ASSERT_TRUE(single) << one.str();
  EXPECT_FALSE(single->chain());
  EXPECT_EQ(single->name, "solo");
  // A loader of one job refuses a chain instead of cutting it to its first document.
  EXPECT_THAT(spec_errors("name: a\nrun: x\n---\nname: b\nrun: y\n"),
              HasSubstr("the file holds several YAML documents: it is a pipeline"));
  // A first document nested too deep is refused by the limits, not read as a header.
  Diagnostics deep;
  EXPECT_FALSE(load_pipeline_text(std::string(200000, '[') + "\n---\nrun: x\n", "d.yaml",
                                  builtin_catalog(), deep));
  EXPECT_THAT(deep.str(), HasSubstr("nesting deeper than 64 levels"));
  // "---" inside a block scalar's indented text is text, not a marker.
  Diagnostics block;
  auto b =
      load_pipeline_text("run: |\n  echo a\n  ---\n  echo b\n", "b.yaml", builtin_catalog(), block);
  ASSERT_TRUE(b) << block.str();
  EXPECT_EQ(b->jobs.size(), 1U);
  EXPECT_THAT(b->jobs[0].run, HasSubstr("---"));
}

}  // namespace
}  // namespace hylab
