#!/usr/bin/env bash
# Shared helpers for the local stack scripts. Sourced, not run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="${PLANTLINE_STATE_DIR:-$ROOT/.plantline}"
RUN="$STATE/run"
LOGS="$STATE/logs"
mkdir -p "$RUN" "$LOGS"

say()  { printf '\033[1;34m==>\033[0m %s\n' "$*"; }
warn() { printf '\033[1;33mwarning:\033[0m %s\n' "$*" >&2; }
die()  { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# port_open HOST PORT: true when something accepts TCP connections there.
port_open() { timeout 1 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

# wait_until SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.2 s until it succeeds.
wait_until() {
  local seconds=$1 what=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    (( SECONDS < deadline )) || { warn "$what did not come up within ${seconds}s"; return 1; }
    sleep 0.2
  done
}

apt_updated=""
apt_install() {
  command -v apt-get >/dev/null || die "cannot install $* here: no apt-get (install them by hand)"
  if [ -z "$apt_updated" ]; then
    say "apt-get update"
    apt-get update -qq >/dev/null
    apt_updated=1
  fi
  say "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# pid_alive NAME: the process recorded in $RUN/NAME.pid is running.
pid_alive() {
  local file="$RUN/$1.pid"
  [ -s "$file" ] && kill -0 "$(cat "$file")" 2>/dev/null
}

# start_daemon NAME LOGFILE COMMAND...: runs COMMAND in its own session, records its own pid
# (exec keeps the pid, so stopping it stops the daemon, not a wrapper shell).
start_daemon() {
  local name=$1 log=$2; shift 2
  setsid bash -c 'echo $$ > "$0"; exec "$@"' "$RUN/$name.pid" "$@" >>"$log" 2>&1 </dev/null &
  wait_until 5 "$name pid file" test -s "$RUN/$name.pid"
}

# stop_daemon NAME [SECONDS] [SIGNAL]: SIGNAL (TERM), wait for a graceful exit, SIGKILL as a
# last resort.
stop_daemon() {
  local name=$1 grace=${2:-25} signal=${3:-TERM} file="$RUN/$1.pid"
  [ -s "$file" ] || return 0
  local pid; pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill -"$signal" "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + grace))
    while kill -0 "$pid" 2>/dev/null; do
      if (( SECONDS >= deadline )); then
        warn "$name did not stop within ${grace}s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        break
      fi
      sleep 0.1
    done
    say "stopped $name"
  fi
  rm -f "$file"
}
