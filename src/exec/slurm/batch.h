// The sbatch script of a job for a Slurm cloud target: the job spec's resources as #SBATCH
// options (accelerators -> --gpus-per-node, cpus -> --cpus-per-task, memory -> --mem,
// hours -> --time with a margin, num_nodes -> --nodes), spot jobs on the spot partition with
// --requeue and a SIGTERM grace period before preemption (--signal), the log appended across
// restarts (--open-mode=append), HYLAB_CHECKPOINT_DIR kept across restarts, envs, then
// setup and run. Sensitive and regulated jobs are refused here too, not only by placement.
// Pure functions: any thread.
#pragma once

#include <cstdint>
#include <string>

#include "common/config.h"
#include "common/job_spec.h"
#include "common/result.h"

namespace hylab::exec::slurm {

struct BatchOptions {
  std::int64_t job_id = 0;     // hylab's job id
  bool spot = false;           // the spot partition, requeued on preemption
  std::string log_path;        // stdout and stderr, appended across restarts
  std::string checkpoint_dir;  // HYLAB_CHECKPOINT_DIR, on storage the job's nodes share
  std::string output_dir;      // HYLAB_OUTPUT_DIR, as for lab jobs
  std::string comment;         // --comment: hylab's mark ("hylab-INSTANCE-ID"), plain characters
  std::string workdir;         // where setup and run start (the spec's workdir if empty)
  int grace_seconds = 120;     // SIGTERM this long before a preemption or the time limit
  double time_margin = 1.25;   // --time = hours x margin, at least hours + 15 minutes
};

// The script, or why this job cannot go to the target.
Result<std::string> batch_script(const JobSpec& spec, const CloudTarget& target,
                                 const BatchOptions& opt);

// A value for a POSIX shell, in single quotes.
std::string shell_quote(std::string_view s);

// Slurm's --time format for a number of minutes: "D-HH:MM:00" or "HH:MM:00".
std::string slurm_time(long minutes);

}  // namespace hylab::exec::slurm
