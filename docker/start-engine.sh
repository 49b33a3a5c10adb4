#!/usr/bin/env bash
# Starts a Docker engine on this machine unless one already answers, and waits until it does.
#
# The engine is Debian's docker.io (installed when missing): dockerd with the containerd it starts
# itself, run with --bridge=none --iptables=false, so it makes no docker0 bridge and no NAT or
# firewall rules. Builds and containers then use the host's network (`--network host`), which on
# these machines reaches only loopback and the package registries.
# Its data (images, build cache) is kept in $WALWARDEN_CACHE/docker (default
# ~/.cache/walwarden/docker), so the base image and the build cache survive between runs; its log
# is $WALWARDEN_CACHE/dockerd.log.
#
#   bash docker/start-engine.sh          # idempotent; stdout: `running` (nothing was started) or
#                                        #   `started <pid>`; stderr: how to stop it
#   bash docker/start-engine.sh --stop   # stops the engine this script started, and only that one
#
# With DOCKER_HOST set, that engine is used: it must answer, and nothing is started.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=docker/common.sh
source "$here/common.sh"

pidfile=$cache/dockerd.pid
log=$cache/dockerd.log
data_root=$cache/docker
wait_seconds=${WALWARDEN_ENGINE_WAIT:-60}

# The pid of the dockerd this script started, if it is still running.
our_dockerd() {
  local pid
  pid=$(cat "$pidfile" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] && echo "$pid"
}

stop_hint() {
  printf 'The engine keeps running in the background (pid %s, log %s). Stop it with:\n  bash %s --stop   (or: kill %s)\n' \
    "$1" "$log" "$here/start-engine.sh" "$1" >&2
}

if [ "${1:-}" = --stop ]; then
  if ! pid=$(our_dockerd); then
    echo "no engine started by this script is running" >&2
    exit 0
  fi
  step "stopping dockerd (pid $pid)"
  as_root kill -TERM "$pid"
  for _ in $(seq 60); do
    [ -e "/proc/$pid" ] || { echo "stopped" >&2; exit 0; }
    sleep 0.5
  done
  die "dockerd (pid $pid) is still running 30 s after SIGTERM; see $log"
fi
[ $# -eq 0 ] || die "usage: $0 [--stop]"

if engine_answers; then
  echo running
  if pid=$(our_dockerd); then stop_hint "$pid"; fi
  exit 0
fi
[ -z "${DOCKER_HOST:-}" ] || die "DOCKER_HOST=$DOCKER_HOST does not answer ($DOCKER version failed); unset it to start a local engine"

apt_install docker.io
[ -x "$DOCKER" ] || command -v "$DOCKER" >/dev/null || die "no docker client ($DOCKER) after installing docker.io"

pid='' started=''
if pid=$(our_dockerd); then
  step "dockerd (pid $pid) is starting already; waiting for it"
elif pgrep -x dockerd >/dev/null 2>&1; then
  die "a dockerd not started by this script is running (pid $(pgrep -x dockerd | tr '\n' ' ')) but does not answer on the default socket; stop it, or point DOCKER_HOST at it"
else
  mkdir -p "$data_root"
  rm -f "$pidfile"
  args=(--bridge=none --iptables=false --ip-masq=false --data-root "$data_root" --pidfile "$pidfile")
  # The socket's group: a user who is not root can then use the engine this call starts for them.
  [ "$(id -u)" -eq 0 ] || args+=(--group "$(id -gn)")
  step "starting dockerd ${args[*]} (log: $log)"
  printf '\n--- %s: dockerd %s\n' "$(date -u +%FT%TZ)" "${args[*]}" >>"$log"
  as_root setsid nohup dockerd "${args[@]}" >>"$log" 2>&1 </dev/null &
  started=$!
fi

deadline=$((SECONDS + wait_seconds))
until engine_answers; do
  if [ -z "$pid" ] && ! kill -0 "$started" 2>/dev/null && ! our_dockerd >/dev/null; then
    printf 'dockerd exited during start-up; the end of %s:\n' "$log" >&2
    tail -n 25 "$log" >&2
    die "the Docker engine (Debian's dockerd --bridge=none --iptables=false) could not start on this machine"
  fi
  if [ $SECONDS -ge $deadline ]; then
    printf 'the end of %s:\n' "$log" >&2
    tail -n 25 "$log" >&2
    die "dockerd did not answer within ${wait_seconds}s ($DOCKER version)"
  fi
  sleep 0.5
done
pid=$(our_dockerd) || die "the engine answers, but $pidfile names no running dockerd"
if [ -n "$started" ]; then echo "started $pid"; else echo running; fi
stop_hint "$pid"
