// Running a command to its end and capturing what it prints: for the cluster commands of
// the Slurm executor (sbatch, squeue, scontrol, scancel, possibly through ssh). Bounded:
// a deadline (the command is killed past it) and a cap on the output kept. Any thread;
// blocks the caller until the command ends.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "common/result.h"

namespace hylab::exec {

struct CommandResult {
  int exit_code = -1;  // -1: killed by a signal or at the deadline
  std::string out, err;
  bool timed_out = false;
};

struct CommandOptions {
  std::string input;                       // written to its standard input
  std::map<std::string, std::string> env;  // added to the environment
  double timeout_seconds = 30;
  std::size_t max_output = 16u << 20;  // per stream; more is an error
};

// An error only when the command could not run at all or said too much; a non-zero exit
// is a result (the caller reads err).
Result<CommandResult> run_command(const std::vector<std::string>& argv, const CommandOptions& opt);

}  // namespace hylab::exec
