// The sbatch script of a job (see batch.h).
#include "exec/slurm/batch.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>

#include "common/text.h"

namespace hylab::exec::slurm {

std::string shell_quote(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::string slurm_time(long minutes) {
  minutes = std::max(1L, minutes);
  long days = minutes / (24 * 60);
  long h = (minutes / 60) % 24, m = minutes % 60;
  if (days > 0) return fmt::format("{}-{:02}:{:02}:00", days, h, m);
  return fmt::format("{:02}:{:02}:00", h, m);
}

namespace {

// Job names reach squeue and log file names: keep them plain.
std::string plain(std::string_view s) {
  std::string out;
  for (char c : s)
    out +=
        std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ? c : '-';
  return out.substr(0, 64);
}

bool valid_env_name(std::string_view s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

}  // namespace

Result<std::string> batch_script(const JobSpec& spec, const CloudTarget& target,
                                 const BatchOptions& opt) {
  if (spec.sensitive()) {
    return invalid_input(fmt::format(
        "job {} is {} data: it never goes to the cloud target {} (the guide's data matrix keeps "
        "it on the lab's GPUs)",
        spec.name.empty() ? std::to_string(opt.job_id) : spec.name, to_string(spec.sensitivity),
        target.name));
  }
  if (target.kind != "slurm")
    return invalid_input("cloud target " + target.name + " is not a Slurm target");
  std::string partition =
      opt.spot && !target.spot_partition.empty() ? target.spot_partition : target.partition;
  std::string s = "#!/bin/bash\n";
  auto opt_line = [&](const std::string& o) { s += "#SBATCH " + o + "\n"; };
  std::string name = fmt::format("--job-name=hylab-{}", opt.job_id);
  if (!spec.name.empty()) {  // += rather than "-" + ...: gcc 12's false -Wrestrict
    name += '-';
    name += plain(spec.name);
  }
  opt_line(name);
  opt_line("--partition=" + partition);
  if (!opt.comment.empty()) opt_line("--comment=" + plain(opt.comment));
  opt_line(fmt::format("--nodes={}", std::max(1, spec.num_nodes)));
  opt_line("--ntasks-per-node=1");
  if (!spec.accelerators.empty() && spec.accelerators.front().count > 0)
    opt_line(fmt::format("--gpus-per-node={}", spec.accelerators.front().count));
  if (spec.cpus)
    opt_line(fmt::format("--cpus-per-task={}", static_cast<int>(std::ceil(*spec.cpus))));
  if (spec.memory_bytes)
    opt_line(fmt::format("--mem={}M", (*spec.memory_bytes + (1ULL << 20) - 1) >> 20));
  if (spec.hours) {
    double minutes = *spec.hours * 60;
    long limit = static_cast<long>(std::ceil(std::max(minutes * opt.time_margin, minutes + 15)));
    opt_line("--time=" + slurm_time(limit));
  }
  if (!opt.log_path.empty()) {
    opt_line("--output=" + opt.log_path);
    opt_line("--error=" + opt.log_path);
    opt_line("--open-mode=append");  // a restarted (requeued) job adds to its log
  }
  if (opt.spot) {
    opt_line("--requeue");
    // SIGTERM to the batch shell before preemption or the limit: time to checkpoint.
    opt_line(fmt::format("--signal=B:TERM@{}", std::max(1, opt.grace_seconds)));
  } else {
    opt_line("--no-requeue");
  }
  s += "set -o pipefail\n";
  s += fmt::format("export HYLAB_JOB_ID={}\n", opt.job_id);
  s += "export HYLAB_TARGET=" + shell_quote(target.name) + "\n";
  s += "export HYLAB_RESTART_COUNT=\"${SLURM_RESTART_COUNT:-0}\"\n";
  if (!opt.checkpoint_dir.empty()) {
    s += "export HYLAB_CHECKPOINT_DIR=" + shell_quote(opt.checkpoint_dir) + "\n";
    s += "mkdir -p \"$HYLAB_CHECKPOINT_DIR\"\n";
  }
  if (!opt.output_dir.empty()) {
    s += "export HYLAB_OUTPUT_DIR=" + shell_quote(opt.output_dir) + "\n";
    s += "mkdir -p \"$HYLAB_OUTPUT_DIR\"\n";
  }
  for (const auto& [name, value] : spec.envs) {
    if (!valid_env_name(name))
      return invalid_input(fmt::format("envs: {} is not a variable name", quote(name)));
    if (!value) {
      return invalid_input(fmt::format(
          "envs: {} has no value: set it in the job spec (a cloud job cannot ask for it at launch)",
          name));
    }
    s += "export " + name + "=" + shell_quote(*value) + "\n";
  }
  std::string workdir = !opt.workdir.empty() ? opt.workdir : spec.workdir.value_or("");
  if (!workdir.empty()) s += "cd " + shell_quote(workdir) + " || exit 1\n";
  // The job's own shell runs setup then run; its exit status is the job's. SIGTERM (the
  // preemption notice) goes on to the running step so it can save a checkpoint.
  s += "trap 'kill -TERM \"$child\" 2>/dev/null' TERM\n";
  if (!spec.setup.empty()) {
    s += "bash -c " + shell_quote(spec.setup) + " &\nchild=$!\nwait \"$child\"; status=$?\n";
    s += "if [ \"$status\" -ne 0 ]; then echo \"hylab: setup failed ($status)\" >&2; exit "
         "\"$status\"; fi\n";
  }
  s += "bash -c " + shell_quote(spec.run.empty() ? "true" : spec.run) + " &\nchild=$!\n";
  // wait returns early when the trap fires: wait again for the step's own exit status.
  s += "wait \"$child\"; status=$?\nwhile kill -0 \"$child\" 2>/dev/null; do wait \"$child\"; "
       "status=$?; done\n";
  s += "exit \"$status\"\n";
  return s;
}

}  // namespace hylab::exec::slurm
