#!/usr/bin/env bash
# Stop the local SLURM cluster started by scripts/slurm/start.sh: exactly the daemons it recorded
# in $INITLAB_SLURM_STATE/pids (default /var/lib/initlab-slurm/pids), never processes found by
# name. A recorded PID counts only while /proc/PID/stat shows a live process (not a zombie: an
# exited daemon may linger as one when nothing reaps it) whose command is that daemon's. SIGTERM,
# then SIGKILL after 15 s. Safe to run twice, and when nothing was started.
set -uo pipefail

STATE=${INITLAB_SLURM_STATE:-/var/lib/initlab-slurm}
stopped=() gone=()

pid_of() { [ -s "$STATE/pids/$1.pid" ] && tr -dc '0-9' <"$STATE/pids/$1.pid"; }
live() { # live NAME PID: a running (non-zombie) process of that command
  local st
  [ -n "$2" ] && [ -r "/proc/$2/stat" ] || return 1
  st=$(sed 's/^.*) //' "/proc/$2/stat" 2>/dev/null | cut -d' ' -f1)
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ] && [ "$(cat "/proc/$2/comm" 2>/dev/null)" = "$1" ]
}

# Clients first, the database last.
for name in slurmd slurmctld slurmdbd mariadbd munged; do
  pid=$(pid_of "$name") || continue
  if live "$name" "$pid"; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 150); do
      live "$name" "$pid" || break
      sleep 0.1
    done
    if live "$name" "$pid"; then
      kill -KILL "$pid" 2>/dev/null
      sleep 0.2
    fi
    if live "$name" "$pid"; then
      echo "slurm: could not stop $name (pid $pid)" >&2
      continue
    fi
    stopped+=("$name ($pid)")
  else
    gone+=("$name")
  fi
  rm -f "$STATE/pids/$name.pid"
done
if [ ${#stopped[@]} -eq 0 ]; then
  echo "slurm: nothing to stop${gone:+ (already gone: ${gone[*]})}" >&2
else
  echo "slurm: stopped ${stopped[*]}${gone:+; already gone: ${gone[*]}}" >&2
fi
