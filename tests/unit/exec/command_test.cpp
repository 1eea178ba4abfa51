// run_command: output and exit code captured, input written, the deadline kills the whole
// process group, too much output is an error, and a command that ignores its input does
// not take the caller down with SIGPIPE.
#include "exec/command.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>

namespace hylab::exec {
namespace {

using ::testing::HasSubstr;

TEST(RunCommand, CapturesOutputExitCodeAndInput) {
  CommandOptions o;
  o.input = "from stdin\n";
  o.env["HYLAB_TEST_VALUE"] = "42";
  auto r =
      run_command({"bash", "-c", "cat; echo \"v=$HYLAB_TEST_VALUE\"; echo oops >&2; exit 3"}, o);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->out, "from stdin\nv=42\n");
  EXPECT_EQ(r->err, "oops\n");
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_FALSE(r->timed_out);
}

TEST(RunCommand, TheDeadlineKillsTheCommandAndItsChildren) {
  CommandOptions o;
  o.timeout_seconds = 0.3;
  auto t0 = std::chrono::steady_clock::now();
  auto r = run_command({"bash", "-c", "sleep 30 & sleep 30; wait"}, o);
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(r->timed_out);
  EXPECT_EQ(r->exit_code, -1);
  EXPECT_LT(took, 5);
}

TEST(RunCommand, TooMuchOutputIsAnError) {
  CommandOptions o;
  o.max_output = 1000;
  auto r = run_command({"bash", "-c", "head -c 100000 /dev/zero"}, o);
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("more than 1000 bytes"));
}

TEST(RunCommand, ACommandThatIgnoresItsInputIsNoHarm) {
  CommandOptions o;
  o.input = std::string(4 << 20, 'x');  // more than a pipe holds
  auto r = run_command({"true"}, o);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->exit_code, 0);
  r = run_command({"no-such-command-hylab"}, {});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->exit_code, 127);
  EXPECT_THAT(r->err, HasSubstr("cannot run no-such-command-hylab"));
}

}  // namespace
}  // namespace hylab::exec
