#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine for the tests: munged on its own socket,
# slurmctld and slurmd as root, every file under DIR, partitions `cloud` and `cloud-spot`
# (the spot one preempted by requeue), 8 fake GPUs (character devices) so --gpus works.
#   tests/slurm/cluster.sh start DIR   # prints SLURM_CONF=DIR/slurm.conf once jobs can run
#   tests/slurm/cluster.sh stop DIR
# Needs root and Debian's slurm-wlm and munge (make test installs them).
set -euo pipefail
cmd=${1:?usage: cluster.sh start|stop DIR}
dir=$(realpath -m "${2:?usage: cluster.sh start|stop DIR}")

# This cluster's job steps (slurmstepd processes with its SLURM_CONF).
steps() {
  for pid in $(pgrep -x slurmstepd || true); do
    { tr '\0' '\n' < "/proc/$pid/environ"; } 2>/dev/null | grep -qx "SLURM_CONF=$dir/slurm.conf" && echo "$pid"
  done
  return 0
}

stop() {
  # Jobs first, while the daemons can still end them properly.
  if [[ -f $dir/slurm.conf && -f $dir/slurmctld.pid ]]; then
    ids=$(SLURM_CONF=$dir/slurm.conf timeout 5 squeue -h -o %i 2>/dev/null || true)
    [[ -n $ids ]] && SLURM_CONF=$dir/slurm.conf timeout 5 scancel $ids 2>/dev/null || true
    for _ in $(seq 1 100); do [[ -z $(steps) ]] && break; sleep 0.05; done
  fi
  for name in slurmd slurmctld munged; do
    [[ -f $dir/$name.pid ]] && kill "$(cat "$dir/$name.pid")" 2>/dev/null || true
  done
  for name in slurmd slurmctld munged; do
    if [[ -f $dir/$name.pid ]]; then
      pid=$(cat "$dir/$name.pid")
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$dir/$name.pid"
    fi
  done
  # Steps whose slurmd is gone linger, trying to report: end them and what they ran.
  for pid in $(steps); do
    pkill -9 -P "$pid" 2>/dev/null || true
    kill -9 "$pid" 2>/dev/null || true
  done
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

[[ $cmd == start || $cmd == stop ]] || { echo "usage: cluster.sh start|stop DIR" >&2; exit 2; }
# The daemons run as root: through sudo (without a password) when this user is not root.
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null && exec sudo -n -E "$0" "$cmd" "$dir"
  echo "error: the test cluster runs its daemons as root (no root, no sudo)" >&2
  exit 1
fi
if [[ $cmd == stop ]]; then stop; exit 0; fi
for tool in munged slurmctld slurmd; do
  command -v $tool >/dev/null || [[ -x /usr/sbin/$tool ]] || { echo "error: $tool is missing (scripts/install-deps.sh test)" >&2; exit 1; }
done
export PATH=$PATH:/usr/sbin

mkdir -p "$dir"/{munge,state,spool,gpu,log}
chmod 755 "$dir" "$dir/munge"   # munged refuses a socket folder others can write to
host=$(hostname -s)

# munge: its own key and socket, so it never meets a system munged.
[[ -f $dir/munge/munge.key ]] || { dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none; chmod 400 "$dir/munge/munge.key"; }
munged --force --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
  --pid-file="$dir/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/seed"

for i in $(seq 0 7); do [[ -e $dir/gpu/gpu$i ]] || mknod "$dir/gpu/gpu$i" c 1 3; done
read -r cpus mem < <(slurmd -C | awk '{for(i=1;i<=NF;i++){split($i,a,"="); if(a[1]=="CPUs")c=a[2]; if(a[1]=="RealMemory")m=a[2]}} END{print c, m}')
mem=$((mem * 9 / 10))
cat > "$dir/slurm.conf" <<CONF
ClusterName=hylab-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=5
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.txt
JobAcctGatherType=jobacct_gather/none
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,sched_interval=1,bf_interval=1
MinJobAge=600
ReturnToService=2
MpiDefault=none
GresTypes=gpu
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:8 State=UNKNOWN
PartitionName=cloud Nodes=$host Default=YES MaxTime=INFINITE State=UP PriorityTier=2
PartitionName=cloud-spot Nodes=$host MaxTime=INFINITE State=UP PriorityTier=1 PreemptMode=REQUEUE
CONF
cat > "$dir/gres.conf" <<CONF
AutoDetect=off
NodeName=$host Name=gpu File=$dir/gpu/gpu[0-7]
CONF
export SLURM_CONF=$dir/slurm.conf
setsid slurmctld -D -i > "$dir/log/slurmctld.out" 2>&1 < /dev/null &
setsid slurmd -D > "$dir/log/slurmd.out" 2>&1 < /dev/null &
# Up when the node is idle (or mixed) in sinfo.
for _ in $(seq 1 300); do
  state=$(sinfo -h -n "$host" -o %t 2>/dev/null | head -1 || true)
  if [[ $state == idle* || $state == mix* ]]; then echo "SLURM_CONF=$SLURM_CONF"; exit 0; fi
  sleep 0.05
done
echo "error: the test cluster did not come up (state '${state:-none}'); logs in $dir/log" >&2
tail -5 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
stop
exit 1
