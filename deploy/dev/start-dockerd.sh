#!/usr/bin/env bash
# Starts a Docker Engine (Debian's docker.io) for the docker sandbox backend when none answers,
# and waits until it does. Idempotent: with a working /var/run/docker.sock it only checks it.
# Needs root. The daemon's log goes to $DOCKERD_LOG (default /var/log/teemate-dockerd.log).
#
# Storage driver: $DOCKERD_STORAGE_DRIVER if set, otherwise overlay2 when the kernel and the
# backing filesystem take it, else vfs (slow to create containers, but works everywhere).
set -euo pipefail

SOCK=/var/run/docker.sock
LOG=${DOCKERD_LOG:-/var/log/teemate-dockerd.log}
DATA=${DOCKERD_DATA_ROOT:-/var/lib/docker}

docker_ok() { docker -H "unix://$SOCK" info >/dev/null 2>&1; }

if [ -S "$SOCK" ] && docker_ok; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "start-dockerd: no engine answers on $SOCK and starting one needs root" >&2
  exit 1
fi
if ! command -v dockerd >/dev/null; then
  echo "start-dockerd: installing Debian's docker.io" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends docker.io runc >/dev/null
fi

# Another start may be under way (a pid file with a live dockerd): just wait for it.
if ! { [ -f /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; }; then
  driver=${DOCKERD_STORAGE_DRIVER:-}
  if [ -z "$driver" ]; then
    mkdir -p "$DATA"
    # overlay2 needs the overlay module and a backing filesystem other than overlayfs itself.
    fstype=$(stat -f -c %T "$DATA")
    if grep -qw overlay /proc/filesystems && [ "$fstype" != overlayfs ]; then
      driver=overlay2
    else
      driver=vfs
    fi
  fi
  rm -f "$SOCK"
  echo "start-dockerd: starting dockerd (storage driver $driver, log $LOG)" >&2
  # setsid: the daemon must outlive this script and the make/test that called it.
  setsid dockerd --host "unix://$SOCK" --storage-driver "$driver" --data-root "$DATA" \
    >>"$LOG" 2>&1 </dev/null &
fi

for _ in $(seq 1 300); do
  if docker_ok; then
    exit 0
  fi
  sleep 0.1
done
echo "start-dockerd: dockerd did not answer within 30 s; last log lines:" >&2
tail -n 20 "$LOG" >&2 || true
exit 1
