#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for the Slurm backend's tests and benchmarks:
# Debian's slurm-wlm (munge, slurmctld, slurmd), no systemd, cgroup-enforced cores and memory.
# Needs root. Idempotent: does nothing when `sinfo` already answers.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if ! command -v slurmctld >/dev/null 2>&1; then
  echo "slurm: installing munge, slurmctld, slurmd, slurm-client"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends munge slurmctld slurmd slurm-client >/dev/null
fi
if timeout 5 sinfo -h >/dev/null 2>&1; then
  exit 0
fi

node_line=$(slurmd -C | head -n 1)
node=$(hostname)
real_mb=$(echo "$node_line" | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
chown slurm:slurm /var/spool/slurmctld /var/log/slurm
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=edge-profiler
SlurmctldHost=${node}
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
TaskPlugin=task/cgroup,task/affinity
ProctrackType=proctrack/cgroup
JobAcctGatherType=jobacct_gather/cgroup
DefMemPerCPU=512
SchedulerParameters=batch_sched_delay=0
MinJobAge=300
ReturnToService=2
${node_line% UpTime=*}
PartitionName=debug Nodes=${node} Default=YES MaxTime=INFINITE State=UP
CONF
cat > /etc/slurm/cgroup.conf <<CONF
CgroupPlugin=autodetect
ConstrainCores=yes
ConstrainRAMSpace=yes
ConstrainSwapSpace=yes
AllowedSwapSpace=0
CONF

[ -s /etc/munge/munge.key ] || { mungekey --create 2>/dev/null || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; }
chown munge:munge /etc/munge/munge.key /run/munge; chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || su -s /bin/sh munge -c /usr/sbin/munged
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 30); do
  if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
    echo "slurm: node ${node} is up ($(echo "$node_line" | sed -n 's/.*\(CPUs=[0-9]*\).*/\1/p'), RealMemory=${real_mb} MB)"
    exit 0
  fi
  sleep 1
done
echo "slurm: the node did not come up; see /var/log/slurm/" >&2
tail -n 5 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
