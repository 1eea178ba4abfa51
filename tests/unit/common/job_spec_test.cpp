#include "common/job_spec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "../test_util.h"

namespace hylab {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::spec_errors;
using testing::spec_from;
using testing::spec_warnings;

// A SkyPilot task file as SkyPilot's docs write one: valid as it is.
constexpr const char* kSkyPilotTask = R"(name: minGPT-ddp
resources:
  cpus: 4+
  accelerators: L4:4
  use_spot: true
num_nodes: 2
envs:
  WANDB_API_KEY: null
  EPOCHS: 10
workdir: ./examples
file_mounts:
  /data: ./data
  /ckpt:
    name: my-bucket
    mode: MOUNT
setup: |
  pip install -r requirements.txt
run: |
  torchrun --nnodes=$SKYPILOT_NUM_NODES train.py
)";

TEST(JobSpec, SkyPilotTaskFileIsAValidSpec) {
  JobSpec s = spec_from(kSkyPilotTask);
  EXPECT_EQ(s.name, "minGPT-ddp");
  EXPECT_EQ(s.num_nodes, 2);
  ASSERT_EQ(s.accelerators.size(), 1u);
  EXPECT_EQ(s.accelerators[0].model, "L4");
  EXPECT_EQ(s.accelerators[0].count, 4);
  EXPECT_EQ(*s.cpus, 4);
  EXPECT_EQ(s.use_spot, true);
  EXPECT_EQ(s.workdir, "./examples");
  EXPECT_FALSE(s.envs.at("WANDB_API_KEY").has_value());
  EXPECT_EQ(s.envs.at("EPOCHS"), "10");
  EXPECT_EQ(s.file_mounts.at("/data"), "./data");
  EXPECT_THAT(s.run, HasSubstr("torchrun"));
  EXPECT_FALSE(s.category_given);
  EXPECT_EQ(s.category, Category::kTraining);
  EXPECT_EQ(s.sensitivity, Sensitivity::kInternal);
  EXPECT_EQ(s.pattern, Pattern::kOneTime);
}

TEST(JobSpec, HylabPlacementKeys) {
  JobSpec s = spec_from(R"(
category: data-processing
data: {sensitivity: regulated, size: 1.5TiB, inputs: [s3://b/x, /mnt/y]}
hours: 36
pattern: continuous
reach: global
outputs: [out/]
)");
  EXPECT_EQ(s.category, Category::kDataProcessing);
  EXPECT_EQ(s.sensitivity, Sensitivity::kRegulated);
  EXPECT_TRUE(s.sensitive());
  EXPECT_EQ(*s.data_bytes, kTiB + kTiB / 2);
  EXPECT_EQ(s.data_inputs.size(), 2u);
  EXPECT_DOUBLE_EQ(*s.hours, 36);
  EXPECT_EQ(s.pattern, Pattern::kContinuous);
  EXPECT_EQ(s.reach, Reach::kGlobal);
  EXPECT_EQ(s.outputs, std::vector<std::string>{"out/"});
  EXPECT_EQ(s.name, "job");  // from the file name
}

TEST(JobSpec, AcceleratorForms) {
  EXPECT_EQ(spec_from("resources: {accelerators: A100}").accelerators[0].count, 1);
  auto dict = spec_from("resources: {accelerators: {A100: 8, V100: 8}}").accelerators;
  ASSERT_EQ(dict.size(), 2u);
  EXPECT_EQ(dict[1].model, "V100");
  auto list = spec_from("resources: {accelerators: [RTX4090:2, a100-80gb:1]}").accelerators;
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[1].model, "A100-80GB");  // canonical name from an alias, any case
}

TEST(JobSpecErrors, UnknownKeyWithDidYouMean) {
  EXPECT_EQ(spec_errors("name: x\ncatgory: training\n"),
            "job.yaml:2:1: error: catgory: unknown key (did you mean 'category'?)\n");
  EXPECT_EQ(
      spec_errors("resources:\n  acelerators: A100:1\n"),
      "job.yaml:2:3: error: resources.acelerators: unknown key (did you mean 'accelerators'?)\n");
}

TEST(JobSpecErrors, UnknownKeyFarFromAnyListsTheKnownKeys) {
  std::string e = spec_errors("data: {frobnicate: 1}\n");
  EXPECT_THAT(e, HasSubstr("job.yaml:1:8: error: data.frobnicate: unknown key; known keys here: "
                           "inputs, sensitivity, size"));
}

TEST(JobSpecErrors, WrongTypes) {
  EXPECT_EQ(spec_errors("num_nodes: two\n"),
            "job.yaml:1:12: error: num_nodes: expected a number, got 'two'\n");
  EXPECT_EQ(spec_errors("num_nodes: '2'\n"),
            "job.yaml:1:12: error: num_nodes: expected a number, got the string '2'\n");
  EXPECT_EQ(spec_errors("resources: {use_spot: maybe}\n"),
            "job.yaml:1:23: error: resources.use_spot: expected true or false, got 'maybe'\n");
  EXPECT_EQ(spec_errors("resources: [A100]\n"),
            "job.yaml:1:12: error: resources: expected a mapping, got a list\n");
  EXPECT_EQ(spec_errors("outputs: {a: b}\n"),
            "job.yaml:1:10: error: outputs: expected a list of strings, got a mapping\n");
}

TEST(JobSpecErrors, ImpossibleValues) {
  EXPECT_EQ(spec_errors("data: {size: -5GB}\n"),
            "job.yaml:1:14: error: data.size: a size cannot be negative, got '-5GB'\n");
  EXPECT_EQ(
      spec_errors("data: {size: huge}\n"),
      "job.yaml:1:14: error: data.size: expected a size such as 250GB or 1.5TiB, got 'huge'\n");
  EXPECT_EQ(spec_errors("resources: {accelerators: A100:0}\n"),
            "job.yaml:1:27: error: resources.accelerators: GPU count must be at least 1, got 0\n");
  EXPECT_EQ(spec_errors("resources: {accelerators: A100:-2}\n"),
            "job.yaml:1:27: error: resources.accelerators: GPU count must be at least 1, got -2\n");
  EXPECT_EQ(spec_errors("resources: {accelerators: A100:0.5}\n"),
            "job.yaml:1:27: error: resources.accelerators: fractional GPU count 0.5 is not "
            "supported: ask for whole GPUs\n");
  // Past long long's range (found by the fuzzer: the check once cast it first).
  EXPECT_EQ(spec_errors("resources: {accelerators: A100:4444444444444444444444444444444}\n"),
            "job.yaml:1:27: error: resources.accelerators: GPU count "
            "4444444444444444444444444444444 is over the limit of 4096 per node\n");
  EXPECT_EQ(spec_errors("num_nodes: 99999999999999999999999999999999\n"),
            "job.yaml:1:12: error: num_nodes: expected a whole number, got "
            "99999999999999999999999999999999\n");
  EXPECT_EQ(spec_errors("num_nodes: 3000000000\n"),
            "job.yaml:1:12: error: num_nodes: must be at most 2147483647, got 3000000000\n");
  EXPECT_EQ(spec_errors("hours: 0\n"),
            "job.yaml:1:8: error: hours: the estimated run time must be greater than 0\n");
  EXPECT_EQ(spec_errors("num_nodes: 0\n"),
            "job.yaml:1:12: error: num_nodes: must be at least 1, got 0\n");
  EXPECT_EQ(spec_errors("resources: {disk_size: 0}\n"),
            "job.yaml:1:24: error: resources.disk_size: must be greater than 0\n");
}

// "did you mean" names another spelling of the same model, never a different GPU.
TEST(JobSpecErrors, UnknownGpuModelSuggestsOnlyTheSameModel) {
  EXPECT_EQ(spec_errors("resources:\n  accelerators: RXT-4090:8\n"),
            "job.yaml:2:17: error: resources.accelerators: unknown GPU model 'RXT-4090' (did you "
            "mean 'RTX4090'?)\n");
  EXPECT_THAT(spec_errors("resources: {accelerators: 'RTX 4090x'}\n"),
              Not(HasSubstr("did you mean")));
  // Real GPUs of their own: A1000 is not an A100, B300 not an H200-class typo.
  for (std::string other : {"A1000", "B300", "H300", "RTX4080S"}) {
    std::string e = spec_errors("resources: {accelerators: " + other + ":8}\n");
    EXPECT_THAT(e, HasSubstr("unknown GPU model '" + other + "'; the catalog knows")) << other;
    EXPECT_THAT(e, Not(HasSubstr("did you mean"))) << other;
  }
  EXPECT_THAT(spec_errors("resources: {accelerators: TPU-v9:8}\n"),
              HasSubstr("unknown GPU model 'TPU-v9'; the catalog knows RTX3090"));
}

// SkyPilot's usual alternatives: {H200:8, H100:8}, where YAML reads "H200:8" as a key
// without a value; and an alternative the catalog does not know is dropped, not fatal.
TEST(JobSpec, AcceleratorAlternativesAsSkyPilotWritesThem) {
  auto flow = spec_from("resources: {accelerators: {H200:8, H100:8}}").accelerators;
  ASSERT_EQ(flow.size(), 2u);
  EXPECT_EQ(flow[0].model, "H200");
  EXPECT_EQ(flow[0].count, 8);
  EXPECT_EQ(flow[1].model, "H100");
  EXPECT_EQ(flow[1].count, 8);
  auto block = spec_from("resources:\n  accelerators:\n    A100:\n    H100: 2\n").accelerators;
  ASSERT_EQ(block.size(), 2u);
  EXPECT_EQ(block[0].count, 1);
  EXPECT_EQ(block[1].count, 2);
  std::string w = spec_warnings("resources: {accelerators: {H300:8, H100:8}}\n");
  EXPECT_THAT(w, HasSubstr("job.yaml:1:28: warning: resources.accelerators.H300:8: unknown GPU "
                           "model 'H300'"));
  EXPECT_THAT(w, HasSubstr("this alternative is dropped"));
  auto kept = spec_from("resources: {accelerators: [H300:8, A100:8]}").accelerators;
  ASSERT_EQ(kept.size(), 1u);
  EXPECT_EQ(kept[0].model, "A100");
  // None left: refused, naming each.
  std::string e = spec_errors("resources: {accelerators: {H300:8, B300:8}}\n");
  EXPECT_THAT(e, HasSubstr("error: resources.accelerators.H300:8: unknown GPU model 'H300'"));
  EXPECT_THAT(e, HasSubstr("error: resources.accelerators.B300:8: unknown GPU model 'B300'"));
  // A bad count is an error even among alternatives.
  EXPECT_THAT(spec_errors("resources: {accelerators: {H100:0, A100:8}}\n"),
              HasSubstr("GPU count must be at least 1, got 0"));
}

TEST(JobSpecErrors, ChoicesAndInstanceTypes) {
  EXPECT_EQ(spec_errors("category: trainig\n"),
            "job.yaml:1:11: error: category: unknown value 'trainig'; expected one of development, "
            "training, inference, data-processing (did you mean 'training'?)\n");
  EXPECT_EQ(
      spec_errors("resources: {instance_type: p4d.24xlarg}\n"),
      "job.yaml:1:28: error: resources.instance_type: unknown instance type 'p4d.24xlarg' (did "
      "you mean 'p4d.24xlarge'?)\n");
}

TEST(JobSpecErrors, SeveralErrorsReportedTogether) {
  std::string e = spec_errors("catgory: training\nhours: -3\nresources: {accelerators: A100:0}\n",
                              "jobs/bad.yaml");
  EXPECT_THAT(e, HasSubstr("jobs/bad.yaml:1:1: error: catgory"));
  EXPECT_THAT(e, HasSubstr("jobs/bad.yaml:2:8: error: hours: a duration cannot be negative"));
  EXPECT_THAT(e, HasSubstr("jobs/bad.yaml:3:27: error: resources.accelerators"));
}

TEST(JobSpecErrors, DuplicateKeysAndSyntax) {
  EXPECT_EQ(spec_errors("hours: 1\nhours: 2\n"),
            "job.yaml:2:1: error: hours: duplicate key (the later value would silently win)\n");
  EXPECT_THAT(spec_errors("resources: {accelerators: [A100\n"),
              HasSubstr("job.yaml:2:1: error: invalid YAML"));
  EXPECT_EQ(spec_errors(""),
            "job.yaml: error: the job spec is empty: give at least a name and a run command\n");
  EXPECT_EQ(spec_errors("- a\n- b\n"),
            "job.yaml:1:1: error: (top level): expected a mapping, got a list\n");
}

TEST(JobSpecErrors, OversizedAndDeeplyNestedInputsAreRefused) {
  EXPECT_THAT(spec_errors(std::string(300 * 1024, '#')),
              HasSubstr("over the limit of 262144 bytes"));
  EXPECT_THAT(spec_errors(std::string(100, '[')), HasSubstr("nesting deeper than 64 levels"));
}

TEST(JobSpecWarnings, SkyPilotKeysNotActedOnAreNamed) {
  Diagnostics d;
  auto s =
      load_job_spec_text("service: {replicas: 2}\nresources: {ports: 8080, region: us-east-1}\n",
                         "job.yaml", builtin_catalog(), d);
  ASSERT_TRUE(s) << d.str();
  EXPECT_FALSE(d.has_errors());
  // Each key at its own line and column, with what ignoring it means.
  EXPECT_THAT(d.str(), HasSubstr("job.yaml:2:13: warning: resources.ports: not acted on: no port "
                                 "is opened or forwarded"));
  EXPECT_THAT(d.str(), HasSubstr("job.yaml:1:11: warning: service.replicas: not acted on: one "
                                 "replica runs"));
  EXPECT_THAT(d.str(), Not(HasSubstr("resources.region")));  // a pin, acted on
  Diagnostics image;
  ASSERT_TRUE(load_job_spec_text("resources:\n  image_id: docker:ubuntu\nsecrets: {A: b}\n",
                                 "job.yaml", builtin_catalog(), image));
  EXPECT_THAT(image.str(), HasSubstr("job.yaml:2:3: warning: resources.image_id: not acted on: "
                                     "the job runs in the host's environment, not in the image"));
  EXPECT_THAT(image.str(), HasSubstr("job.yaml:3:1: warning: secrets: not acted on: not passed"));
}

TEST(JobSpecFile, MissingFileNamesIt) {
  Diagnostics d;
  EXPECT_FALSE(load_job_spec_file("/nonexistent/job.yaml", builtin_catalog(), d));
  EXPECT_EQ(d.str(), "/nonexistent/job.yaml: error: cannot open: No such file or directory\n");
}

// Every string is stored and shown again (hylab jobs, the API): it must be text.
TEST(JobSpecText, BytesThatAreNotUtf8AreRefusedAtTheirLineAndColumn) {
  EXPECT_EQ(spec_errors("run: echo hi\nname: caf\xff\n"),
            "job.yaml:2:10: error: byte 0xff is not valid UTF-8: a job spec must be UTF-8 text\n");
  EXPECT_THAT(spec_errors("name: \xed\xa0\x80\n"), HasSubstr("job.yaml:1:7: error: byte 0xed"));
  EXPECT_THAT(spec_errors("name: x\nrun: echo \xc0\xaf\n"), HasSubstr("job.yaml:2:11"));
}

TEST(JobSpecText, ControlCharactersAreRefusedNamingTheField) {
  EXPECT_THAT(spec_errors("name: \"evil\\e[2J\"\nrun: echo\n"),
              HasSubstr("job.yaml:1:7: error: name: control character U+001B (ESC) at byte 4: "
                        "this value must be one line of text"));
  EXPECT_THAT(spec_errors("name: \"a\\x9b31m\"\n"), HasSubstr("name: control character U+009B"));
  EXPECT_THAT(spec_errors("name: \"a\\x7f\"\n"), HasSubstr("name: control character U+007F"));
  EXPECT_THAT(spec_errors("name: \"two\\nlines\"\n"), HasSubstr("name: control character U+000A"));
  EXPECT_THAT(spec_errors("workdir: \"/tmp/\\0x\"\n"),
              HasSubstr("workdir: control character U+0000"));
  EXPECT_THAT(spec_errors("envs: {\"K\\e\": v}\n"), HasSubstr("envs.K\\x1b: control character"));
  EXPECT_THAT(spec_errors("file_mounts: {/d: \"s\\e\"}\n"), HasSubstr("file_mounts./d: control"));
  EXPECT_THAT(spec_errors("outputs: [ok, \"b\\ad\"]\n"),
              HasSubstr("outputs[1]: control character"));
  EXPECT_THAT(spec_errors("data: {inputs: [\"\\e\"]}\n"), HasSubstr("data.inputs[0]: control"));
  // JSON is YAML: its escapes are refused as well.
  EXPECT_THAT(spec_errors(R"({"name": "x\u001b[31m", "run": "echo"})"),
              HasSubstr("name: control character U+001B (ESC)"));
}

TEST(JobSpecText, ScriptsAndEnvironmentValuesMayHaveTabsAndLines) {
  JobSpec s = spec_from(
      "name: ok\nenvs: {CERT: \"line1\\n\\tline2\"}\nsetup: \"a\\tb\\n\"\nrun: |\n  echo a\n"
      "  \techo b\n");
  EXPECT_EQ(*s.envs.at("CERT"), "line1\n\tline2");
  EXPECT_EQ(s.setup, "a\tb\n");
  EXPECT_EQ(s.run, "echo a\n\techo b\n");
  EXPECT_EQ(spec_from("name: caf\xc3\xa9 \xf0\x9f\x98\x80\nrun: echo\n").name,
            "caf\xc3\xa9 \xf0\x9f\x98\x80");
  // But nothing a terminal would obey, not even in a script.
  EXPECT_THAT(spec_errors("run: \"echo \\e]0;pwned\\a\"\n"),
              HasSubstr("run: control character U+001B (ESC) at byte 5: only tab and newline may "
                        "appear in a script or an environment value"));
  EXPECT_THAT(spec_errors("envs: {A: \"\\r\"}\n"), HasSubstr("envs.A: control character U+000D"));
}

TEST(JobSpecText, CrlfFilesStillLoad) {
  // yaml-cpp folds CRLF line breaks into LF: a file saved on Windows is text.
  EXPECT_EQ(spec_from("name: w\r\nrun: |\r\n  echo a\r\n  echo b\r\n").run, "echo a\necho b\n");
}

}  // namespace
}  // namespace hylab
