// The Slurm commands of one cloud target: sbatch, squeue --json, scontrol show job -o and
// scancel, run on this host or through `ssh HOST` (the user's own OpenSSH config), with the
// target's env (e.g. SLURM_CONF). Slurm 22.05: scontrol has no --json. Blocking calls with
// a deadline each; any thread.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/result.h"

namespace hylab::exec::slurm {

struct SlurmJob {
  std::string id;
  std::string name;
  std::string state;  // PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, PREEMPTED, ...
  std::string reason;
  std::string partition;
  std::string comment;  // hylab's "hylab-INSTANCE-ID", to find a job whose id was not recorded
  std::optional<int> exit_code;  // of the batch script, when it ended
  std::optional<int> signal;
  int restarts = 0;
  std::string start_time, end_time;  // Slurm's ISO times ("Unknown" / "None" as empty)
  bool ended() const;
};

// `scontrol show job -o` output (one line per job): key=value fields.
std::vector<SlurmJob> parse_scontrol(const std::string& text);
// `squeue --json` output (Slurm 22.05's data_parser): the jobs Slurm holds as active. Times
// come as Unix seconds and are given back in scontrol's local ISO form.
Result<std::vector<SlurmJob>> parse_squeue_json(const std::string& text);
// `sbatch --parsable` output: "ID" or "ID;CLUSTER".
Result<std::string> parse_sbatch(const std::string& out);

class SlurmClient {
 public:
  explicit SlurmClient(CloudTarget target, double timeout_seconds = 30);
  Result<std::string> submit(const std::string& script);
  // Nothing when Slurm no longer knows the job (past MinJobAge).
  Result<std::optional<SlurmJob>> query(const std::string& id);
  // Every job Slurm knows now (one `scontrol show job -o` for all).
  Result<std::vector<SlurmJob>> query_all();
  // The active jobs (one `squeue --json`): pending, running, completing.
  Result<std::vector<SlurmJob>> query_active();
  Result<bool> cancel(const std::string& id);
  // Moves a pending job to another partition (a spot job falling back to on-demand).
  Result<bool> move_to_partition(const std::string& id, const std::string& partition);
  // Brings `paths` (relative to `remote_dir`, files or folders) into `dest`: copied on this
  // host, or streamed with `ssh HOST tar` for a target reached through ssh. Returns the
  // paths that were not there.
  Result<std::vector<std::string>> fetch(const std::string& remote_dir,
                                         const std::vector<std::string>& paths,
                                         const std::string& dest, double timeout_seconds);
  const CloudTarget& target() const { return target_; }

 private:
  Result<std::string> run(std::vector<std::string> argv, const std::string& input,
                          bool unknown_job_ok = false);
  CloudTarget target_;
  double timeout_;
};

}  // namespace hylab::exec::slurm
