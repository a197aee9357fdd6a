#!/usr/bin/env bash
# Start a single-node SLURM cluster on this machine, for tests of `hydra/launcher=slurm`.
#
#   sudo bash scripts/slurm/start.sh     # idempotent: installs if needed, starts what is not up
#   sudo bash scripts/slurm/stop.sh      # ends exactly the daemons this script started
#
# Debian/Ubuntu, as root, no systemd needed (daemons are started by hand): munge, MariaDB (no
# network, socket only) for slurmdbd, slurmdbd (accounting: without it `sacct` fails and
# submitit waits forever for a job that was killed hard), slurmctld and slurmd. The node layout
# is `slurmd -C`'s; GPUs get a gres entry when nvidia-smi lists some. Everything the cluster
# writes is under $INITLAB_SLURM_STATE (default /var/lib/initlab-slurm), except the config files
# /etc/slurm/{slurm,slurmdbd,gres}.conf (where SLURM's commands look for them), which are only
# written when absent or written by this script before. Prints one status line; exits nonzero
# with a message saying why when the cluster cannot come up.
set -euo pipefail

STATE=${INITLAB_SLURM_STATE:-/var/lib/initlab-slurm}
ETC=/etc/slurm
MARK="# written by initlab scripts/slurm/start.sh"
CLUSTER=initlab
WAIT_S=${INITLAB_SLURM_WAIT_S:-60}
NODE=$(hostname -s)
HERE=$(cd "$(dirname "$0")" && pwd)
T0=$(date +%s.%N)

say() { echo "slurm: $*" >&2; }
die() {
  echo "slurm: cannot start the local cluster: $*" >&2
  for f in slurmctld slurmd slurmdbd; do
    [ -f "$STATE/log/$f.log" ] && { echo "--- tail of $STATE/log/$f.log" >&2; tail -n 5 "$STATE/log/$f.log" >&2; }
  done
  echo "slurm: (daemons it did start keep running: bash $HERE/stop.sh ends them)" >&2
  exit 1
}

# A recorded daemon is up when its PID file names a live process (not a zombie: a daemon that
# exited may linger as one when nothing reaps it) whose command is the expected one.
pid_of() { [ -s "$STATE/pids/$1.pid" ] && tr -dc '0-9' <"$STATE/pids/$1.pid"; }
alive() { # alive NAME
  local pid st
  pid=$(pid_of "$1") || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  st=$(sed 's/^.*) //' "/proc/$pid/stat" | cut -d' ' -f1)
  [ "$st" != Z ] && [ "$st" != X ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ]
}
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local t=$1 what=$2
  shift 2
  for _ in $(seq $((t * 10))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "$what did not come up within ${t} s"
}
record() { # record NAME PIDFILE: copy a daemon's own PID file into ours once it appears
  for _ in $(seq 100); do
    if [ -s "$2" ]; then
      if [ "$2" != "$STATE/pids/$1.pid" ]; then
        { tr -dc '0-9' <"$2"; echo; } >"$STATE/pids/$1.pid.tmp" && mv "$STATE/pids/$1.pid.tmp" "$STATE/pids/$1.pid"
      fi
      alive "$1" && return 0
    fi
    sleep 0.1
  done
  die "$1 did not start (no live process in $2)"
}
ours_or_absent() { [ ! -e "$1" ] || grep -qxF "$MARK" "$1"; }

[ "$(id -u)" = 0 ] || die "run it as root (it installs packages and starts system daemons)"

# --- install (seconds on Debian bookworm) ------------------------------------------------------
need_install=0
for b in munged munge unmunge slurmctld slurmd slurmdbd sinfo sbatch sacct sacctmgr mariadbd mariadb \
  mariadb-admin mariadb-install-db; do
  command -v "$b" >/dev/null 2>&1 || need_install=1
done
if [ "$need_install" = 1 ]; then
  command -v apt-get >/dev/null || die "SLURM is not installed and there is no apt-get to install it"
  say "installing munge, slurm (slurmctld, slurmd, slurmdbd, client) and mariadb-server"
  # Keep the packages' init scripts from starting daemons of their own.
  policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    policy=/usr/sbin/policy-rc.d
  fi
  pkgs=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server)
  export DEBIAN_FRONTEND=noninteractive
  ok=0
  apt-get install -y -q --no-install-recommends "${pkgs[@]}" >"/tmp/initlab-slurm-apt.log" 2>&1 ||
    { apt-get update -q >>"/tmp/initlab-slurm-apt.log" 2>&1 &&
      apt-get install -y -q --no-install-recommends "${pkgs[@]}" >>"/tmp/initlab-slurm-apt.log" 2>&1; } || ok=$?
  [ -n "$policy" ] && rm -f "$policy"
  [ "$ok" = 0 ] || die "apt-get install failed (log: /tmp/initlab-slurm-apt.log)"
fi

mkdir -p "$STATE"/{pids,log,ctld,spool}
chmod 755 "$STATE"

# --- already up? -------------------------------------------------------------------------------
status_line() {
  local t cpus mem gres
  t=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
  read -r cpus mem gres < <(sinfo -h -N -n "$NODE" -o '%c %m %G' | head -n1)
  echo "slurm: cluster '$CLUSTER' up ($1 in $t s): node $NODE $(node_state), $cpus CPUs, $mem MB, gres $gres;" \
    "accounting via slurmdbd; state $STATE; stop: bash $HERE/stop.sh"
}
node_state() { sinfo -h -n "$NODE" -o '%t' 2>/dev/null | head -n1; }
node_up() { case "$(node_state)" in idle | mix | alloc | comp) return 0 ;; esac; return 1; }
if alive munged && alive mariadbd && alive slurmdbd && alive slurmctld && alive slurmd && node_up; then
  status_line "already running"
  exit 0
fi

# --- configuration -----------------------------------------------------------------------------
for f in slurm.conf slurmdbd.conf gres.conf; do
  ours_or_absent "$ETC/$f" || die "$ETC/$f exists and was not written by this script: not touching a real cluster's configuration"
done
mkdir -p "$ETC"
layout=$(slurmd -C 2>/dev/null | sed -n '1s/^NodeName=[^ ]* //p')
[ -n "$layout" ] || die "slurmd -C did not report this node's layout"
gpus=0
if command -v nvidia-smi >/dev/null 2>&1 && [ -e /dev/nvidia0 ]; then
  gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
fi
gres_types="" node_gres=""
if [ "$gpus" -gt 0 ]; then
  gres_types="GresTypes=gpu"
  node_gres="Gres=gpu:$gpus"
  printf '%s\nNodeName=%s Name=gpu File=/dev/nvidia[0-%d]\n' "$MARK" "$NODE" $((gpus - 1)) >"$ETC/gres.conf"
else
  rm -f "$ETC/gres.conf"
fi
cat >"$ETC/slurm.conf" <<EOF
$MARK
# A single-node test cluster (state: $STATE). Stop it with: bash $HERE/stop.sh
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/pids/slurmctld.pid
SlurmdPidFile=$STATE/pids/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
KillWait=5
InactiveLimit=0
MinJobAge=300
$gres_types
NodeName=$NODE NodeAddr=127.0.0.1 $layout $node_gres State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
if [ ! -s "$STATE/dbpass" ]; then
  (umask 077 && head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$STATE/dbpass")
fi
(
  umask 077
  cat >"$ETC/slurmdbd.conf" <<EOF
$MARK
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=$STATE/pids/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$(cat "$STATE/dbpass")
StorageLoc=slurm_acct_db
EOF
)
chmod 600 "$ETC/slurmdbd.conf"

# --- munge -------------------------------------------------------------------------------------
if ! alive munged; then
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "a munged not started by this script already answers: using it"
  else
    [ -s /etc/munge/munge.key ] || { mungekey --create 2>/dev/null || create-munge-key -f; } >/dev/null 2>&1 ||
      die "no /etc/munge/munge.key and none could be created"
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    chmod 755 /run/munge
    rm -f /run/munge/initlab-munged.pid
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/initlab-munged.pid ||
      die "munged did not start (see /var/log/munge/munged.log)"
    record munged /run/munge/initlab-munged.pid
  fi
fi
wait_for 10 "munge" bash -c 'munge -n | unmunge'

# --- MariaDB for slurmdbd (socket only) ---------------------------------------------------------
SOCK=/run/mysqld/mysqld.sock
mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
if ! alive mariadbd; then
  [ -S "$SOCK" ] && mariadb-admin --socket="$SOCK" ping >/dev/null 2>&1 &&
    die "a MariaDB not started by this script already listens on $SOCK"
  if [ ! -d "$STATE/mysql/mysql" ]; then
    mariadb-install-db --user=mysql --datadir="$STATE/mysql" --skip-test-db \
      --auth-root-authentication-method=socket >"$STATE/log/mariadb-install.log" 2>&1 ||
      die "mariadb-install-db failed (log: $STATE/log/mariadb-install.log)"
  fi
  touch "$STATE/log/mariadb.log" && chown mysql:mysql "$STATE/log/mariadb.log"
  rm -f /run/mysqld/initlab-mariadbd.pid
  setsid /usr/sbin/mariadbd --user=mysql --datadir="$STATE/mysql" --skip-networking \
    --socket="$SOCK" --pid-file=/run/mysqld/initlab-mariadbd.pid \
    --log-error="$STATE/log/mariadb.log" </dev/null >/dev/null 2>&1 &
  record mariadbd /run/mysqld/initlab-mariadbd.pid
fi
wait_for 30 "MariaDB" mariadb-admin --socket="$SOCK" ping
mariadb --socket="$SOCK" -u root <<EOF || die "could not create the accounting database user"
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$(cat "$STATE/dbpass")';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$(cat "$STATE/dbpass")';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
EOF

# --- slurmdbd, slurmctld, slurmd ------------------------------------------------------------------
if ! alive slurmdbd; then
  /usr/sbin/slurmdbd || die "slurmdbd did not start"
  record slurmdbd "$STATE/pids/slurmdbd.pid"
fi
wait_for 30 "slurmdbd" sacctmgr -n list cluster
sacctmgr -n list cluster format=cluster | grep -qw "$CLUSTER" ||
  sacctmgr -i add cluster "$CLUSTER" >/dev/null || die "could not register cluster $CLUSTER with slurmdbd"
if ! alive slurmctld; then
  /usr/sbin/slurmctld || die "slurmctld did not start"
  record slurmctld "$STATE/pids/slurmctld.pid"
fi
wait_for 30 "slurmctld" scontrol ping
if ! alive slurmd; then
  /usr/sbin/slurmd -N "$NODE" || die "slurmd did not start"
  record slurmd "$STATE/pids/slurmd.pid"
fi
resumed=0
for _ in $(seq $((WAIT_S * 10))); do
  node_up && break
  case "$(node_state)" in
  down* | drain* | drng*)
    if [ "$resumed" = 0 ]; then
      scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
      resumed=1
    fi
    ;;
  esac
  sleep 0.1
done
node_up || die "node $NODE is '$(node_state)', not up, after ${WAIT_S} s"
status_line started
