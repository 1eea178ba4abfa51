// The hylab command line: parses arguments, runs a subcommand, writes to the given
// streams and returns the process exit code (0 done, 2 bad input, 3 cannot place,
// 1 anything else). In-process so tests can call it; main() only forwards.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace hylab::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitBadInput = 2;
inline constexpr int kExitCannotPlace = 3;

int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace hylab::cli
