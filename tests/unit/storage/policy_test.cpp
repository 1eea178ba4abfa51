// The sensitivity rules (storage.sensitive / storage.shareable): path_glob_match's wildcards
// ('*' and '?' inside one path segment, "**" across segments, "**/" for zero or more folders),
// folder rules that cover everything below them but not a sibling sharing the prefix, relative
// entries resolved against the config folder, shareable exceptions, and the refusal message
// and counter.
#include "storage/policy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

namespace hylab::storage {
namespace {

using ::testing::HasSubstr;

TEST(PolicyGlob, SingleStarStaysInsideOneSegment) {
  EXPECT_TRUE(path_glob_match("*.csv", "a.csv"));
  EXPECT_TRUE(path_glob_match("*.csv", ".csv"));
  EXPECT_FALSE(path_glob_match("*.csv", "d/a.csv"));
  EXPECT_FALSE(path_glob_match("*.csv", "a.csv.bak"));
  EXPECT_TRUE(path_glob_match("data/*", "data/x"));
  EXPECT_FALSE(path_glob_match("data/*", "data/x/y"));
  EXPECT_TRUE(path_glob_match("data/*/raw", "data/2024/raw"));
  EXPECT_FALSE(path_glob_match("data/*/raw", "data/2024/05/raw"));
  EXPECT_TRUE(path_glob_match("a*b*c", "axxbyyc"));
  EXPECT_FALSE(path_glob_match("a*b*c", "axxb/yyc"));
  EXPECT_TRUE(path_glob_match("data/patients-*", "data/patients-2024.csv"));
  EXPECT_FALSE(path_glob_match("data/patients-*", "data/patients-2024/x.csv"));
  EXPECT_FALSE(path_glob_match("data/patients-*", "data/patient-2024.csv"));
}

TEST(PolicyGlob, QuestionMarkIsOneCharacterButNotASlash) {
  EXPECT_TRUE(path_glob_match("file?.txt", "file1.txt"));
  EXPECT_FALSE(path_glob_match("file?.txt", "file.txt"));
  EXPECT_FALSE(path_glob_match("file?.txt", "file12.txt"));
  EXPECT_FALSE(path_glob_match("a?b", "a/b"));
  EXPECT_TRUE(path_glob_match("??", "ab"));
  EXPECT_FALSE(path_glob_match("??", "a"));
}

TEST(PolicyGlob, DoubleStarCrossesFolders) {
  EXPECT_TRUE(path_glob_match("data/**", "data/x"));
  EXPECT_TRUE(path_glob_match("data/**", "data/x/y/z.bin"));
  EXPECT_FALSE(path_glob_match("data/**", "other/x"));
  EXPECT_TRUE(path_glob_match("**", "a/b/c"));
  EXPECT_TRUE(path_glob_match("/lab/**/secret", "/lab/a/b/secret"));
}

TEST(PolicyGlob, DoubleStarSlashMatchesZeroOrMoreWholeFolders) {
  EXPECT_TRUE(path_glob_match("**/*.csv", "a.csv"));
  EXPECT_TRUE(path_glob_match("**/*.csv", "x/a.csv"));
  EXPECT_TRUE(path_glob_match("**/*.csv", "x/y/a.csv"));
  EXPECT_FALSE(path_glob_match("**/*.csv", "x/y/a.txt"));
  EXPECT_FALSE(path_glob_match("**/*.csv", "x/a.csv/b"));
  EXPECT_TRUE(path_glob_match("/lab/**/*.csv", "/lab/a.csv"));
  EXPECT_TRUE(path_glob_match("/lab/**/*.csv", "/lab/runs/7/out.csv"));
  EXPECT_TRUE(path_glob_match("a/**/b", "a/b"));
  EXPECT_TRUE(path_glob_match("a/**/b", "a/x/b"));
  EXPECT_TRUE(path_glob_match("a/**/b", "a/x/y/b"));
  // "**/" stands for whole folders: it never eats part of a name.
  EXPECT_FALSE(path_glob_match("a/**/b", "a/xb"));
  EXPECT_FALSE(path_glob_match("a/**/b", "a/x/yb"));
  EXPECT_FALSE(path_glob_match("**/summary.csv", "raw-summary.csv"));
  EXPECT_FALSE(path_glob_match("**/summary.csv", "data/raw-summary.csv"));
  EXPECT_TRUE(path_glob_match("**/summary.csv", "data/summary.csv"));
  EXPECT_TRUE(path_glob_match("a/**/b/*.txt", "a/1/2/b/c.txt"));
  EXPECT_FALSE(path_glob_match("a/**/b/*.txt", "a/1/2/b/c/d.txt"));
}

TEST(PolicyGlob, LiteralsMustMatchExactly) {
  EXPECT_TRUE(path_glob_match("", ""));
  EXPECT_FALSE(path_glob_match("", "a"));
  EXPECT_FALSE(path_glob_match("a", ""));
  EXPECT_TRUE(path_glob_match("*", ""));
  EXPECT_TRUE(path_glob_match("data/a.csv", "data/a.csv"));
  EXPECT_FALSE(path_glob_match("data/a.csv", "data/a.csv2"));
  EXPECT_FALSE(path_glob_match("data/a.csv", "data/a.cs"));
}

// The rules of a config file in /lab/project (the folder need not exist: paths are
// normalised lexically).
constexpr const char* kBase = "/lab/project";

TEST(PolicyRules, EmptyRulesAllowEverything) {
  SensitivityRules rules;
  EXPECT_TRUE(rules.empty());
  EXPECT_TRUE(rules.check_upload("/lab/project/data/secret/a.csv", "s3://b/x"));
  SensitivityRules only_shareable({}, {"results"}, kBase);
  EXPECT_TRUE(only_shareable.empty());
  EXPECT_TRUE(only_shareable.check_upload("/anything", "s3://b/x"));
}

TEST(PolicyRules, FolderCoversEverythingBelowButNotASiblingWithTheSamePrefix) {
  SensitivityRules rules({"data/secret"}, {}, kBase);
  EXPECT_FALSE(rules.empty());
  EXPECT_FALSE(rules.check_upload("/lab/project/data/secret", "s3://b/x"));
  EXPECT_FALSE(rules.check_upload("/lab/project/data/secret/a.csv", "s3://b/x"));
  EXPECT_FALSE(rules.check_upload("/lab/project/data/secret/deep/er/a.csv", "s3://b/x"));
  EXPECT_TRUE(rules.check_upload("/lab/project/data/secret2", "s3://b/x"));
  EXPECT_TRUE(rules.check_upload("/lab/project/data/secret2/a.csv", "s3://b/x"));
  EXPECT_TRUE(rules.check_upload("/lab/project/data/secret.csv", "s3://b/x"));
  EXPECT_TRUE(rules.check_upload("/lab/project/data", "s3://b/x"));
  EXPECT_TRUE(rules.check_upload("/lab/project/data/other/a.csv", "s3://b/x"));
  // The relative rule is under the config's folder, not anywhere.
  EXPECT_TRUE(rules.check_upload("/elsewhere/data/secret/a.csv", "s3://b/x"));
}

TEST(PolicyRules, PathsAreNormalisedBeforeMatching) {
  SensitivityRules rules({"./data/secret/"}, {}, kBase + std::string("/"));
  EXPECT_FALSE(rules.check_upload("/lab/project/data/./secret/../secret/a.csv", "s3://b/x"));
  EXPECT_FALSE(rules.check_upload("/lab/project/other/../data/secret/a.csv", "s3://b/x"));
  EXPECT_FALSE(rules.check_upload("/lab/project/data/secret/", "s3://b/x"));
  EXPECT_TRUE(rules.check_upload("/lab/project/data/secret/../public/a.csv", "s3://b/x"));
}

TEST(PolicyRules, AbsoluteEntriesStayAbsolute) {
  SensitivityRules rules({"/srv/phi"}, {}, kBase);
  EXPECT_FALSE(rules.check_upload("/srv/phi/p1.csv", "s3://b/x"));
  EXPECT_TRUE(rules.check_upload("/lab/project/srv/phi/p1.csv", "s3://b/x"));
}

TEST(PolicyRules, RelativeUploadPathsResolveAgainstTheWorkingFolder) {
  std::string cwd = std::filesystem::current_path().generic_string();
  SensitivityRules rules({"data/secret"}, {}, cwd);
  EXPECT_FALSE(rules.check_upload("data/secret/a.csv", "s3://b/x"));
  EXPECT_FALSE(rules.check_upload("./data/secret/sub/a.csv", "s3://b/x"));
  EXPECT_TRUE(rules.check_upload("data/secret2/a.csv", "s3://b/x"));
}

TEST(PolicyRules, GlobEntries) {
  SensitivityRules rules({"**/*.csv", "data/patients-*"}, {}, kBase);
  EXPECT_FALSE(rules.check_upload("/lab/project/a.csv", "s3://b/x"));
  EXPECT_FALSE(rules.check_upload("/lab/project/runs/1/out.csv", "s3://b/x"));
  EXPECT_TRUE(rules.check_upload("/lab/project/runs/1/out.parquet", "s3://b/x"));
  // Globs are relative to the config's folder too.
  EXPECT_TRUE(rules.check_upload("/elsewhere/a.csv", "s3://b/x"));
  // A glob naming a folder covers what is inside it.
  EXPECT_FALSE(rules.check_upload("/lab/project/data/patients-2024.parquet", "s3://b/x"));
  EXPECT_FALSE(rules.check_upload("/lab/project/data/patients-2024/visits.parquet", "s3://b/x"));
  EXPECT_TRUE(rules.check_upload("/lab/project/data/patient-2024.parquet", "s3://b/x"));
  EXPECT_TRUE(rules.check_upload("/lab/project/data/x/patients-2024.parquet", "s3://b/x"));
}

TEST(PolicyRules, ShareableExceptionsInsideASensitiveFolder) {
  SensitivityRules rules({"data"}, {"data/results/summary-*.csv", "data/public"}, kBase);
  EXPECT_TRUE(rules.check_upload("/lab/project/data/results/summary-2024.csv", "s3://b/x"));
  EXPECT_FALSE(rules.check_upload("/lab/project/data/results/raw-2024.csv", "s3://b/x"));
  EXPECT_FALSE(rules.check_upload("/lab/project/data/results/summary-2024.parquet", "s3://b/x"));
  EXPECT_TRUE(rules.check_upload("/lab/project/data/public", "s3://b/x"));
  EXPECT_TRUE(rules.check_upload("/lab/project/data/public/x/y.bin", "s3://b/x"));
  EXPECT_FALSE(rules.check_upload("/lab/project/data/public2/y.bin", "s3://b/x"));
  EXPECT_FALSE(rules.check_upload("/lab/project/data/a.bin", "s3://b/x"));
}

TEST(PolicyRules, ShareableGlobNeverExemptsANameThatOnlyEndsLikeIt) {
  // "**/summary.csv" exempts files called summary.csv, not raw-summary.csv.
  SensitivityRules rules({"data"}, {"**/summary.csv"}, kBase);
  EXPECT_TRUE(rules.check_upload("/lab/project/data/summary.csv", "s3://b/x"));
  EXPECT_TRUE(rules.check_upload("/lab/project/data/run1/summary.csv", "s3://b/x"));
  EXPECT_FALSE(rules.check_upload("/lab/project/data/raw-summary.csv", "s3://b/x"));
  EXPECT_FALSE(rules.check_upload("/lab/project/data/run1/raw-summary.csv", "s3://b/x"));
}

TEST(PolicyRules, RefusalNamesPathRuleAndDestinationAndIsCounted) {
  SensitivityRules rules({"data/secret"}, {}, kBase);
  std::uint64_t before = refused_uploads();
  auto r = rules.check_upload("/lab/project/data/secret/a.csv", "s3://lab-bucket/in/a.csv");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kInvalidInput);
  EXPECT_THAT(r.error().message, HasSubstr("/lab/project/data/secret/a.csv"));
  EXPECT_THAT(r.error().message, HasSubstr("storage.sensitive: /lab/project/data/secret"));
  EXPECT_THAT(r.error().message, HasSubstr("s3://lab-bucket/in/a.csv"));
  EXPECT_THAT(r.error().message, HasSubstr("storage.shareable"));
  EXPECT_EQ(refused_uploads(), before + 1);

  // Allowed uploads are not counted; every refusal is.
  EXPECT_TRUE(rules.check_upload("/lab/project/data/public.csv", "s3://lab-bucket/x"));
  EXPECT_EQ(refused_uploads(), before + 1);
  EXPECT_FALSE(rules.check_upload("/lab/project/data/secret/b.csv", "s3://lab-bucket/x"));
  EXPECT_FALSE(rules.check_upload("/lab/project/data/secret", "file:///backup"));
  EXPECT_EQ(refused_uploads(), before + 3);
}

TEST(PolicyRules, RefusalNamesTheGlobRuleThatMatched) {
  SensitivityRules rules({"models", "**/*.csv"}, {}, kBase);
  auto r = rules.check_upload("/lab/project/runs/a.csv", "s3://b/a.csv");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("storage.sensitive: /lab/project/**/*.csv"));
  EXPECT_THAT(r.error().message, HasSubstr("/lab/project/runs/a.csv"));
}

TEST(PolicyRules, SymlinksDoNotGetAroundTheRules) {
  namespace fs = std::filesystem;
  fs::path root = fs::temp_directory_path() / ("hylab-policy-links-" + std::to_string(::getpid()));
  fs::remove_all(root);
  fs::create_directories(root / "real" / "secret");
  fs::create_directories(root / "real" / "open");
  fs::create_directory_symlink(root / "real", root / "link");
  fs::create_directory_symlink(root / "real" / "secret", root / "real" / "open" / "alias");
  // The rule names the folder through the link; uploads name it directly, and the other way.
  SensitivityRules through_link({"secret"}, {}, (root / "link").string());
  auto r = through_link.check_upload((root / "real" / "secret" / "x.csv").string(), "s3://b/x");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("is sensitive"));
  SensitivityRules direct({"secret"}, {}, (root / "real").string());
  EXPECT_FALSE(direct.check_upload((root / "link" / "secret" / "x.csv").string(), "s3://b/x"));
  // A link inside an open folder that points into the sensitive one.
  r = direct.check_upload((root / "real" / "open" / "alias" / "x.csv").string(), "s3://b/x");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("that is"));
  EXPECT_TRUE(direct.check_upload((root / "link" / "open" / "y.csv").string(), "s3://b/y"));
  fs::remove_all(root);
}

}  // namespace
}  // namespace hylab::storage
