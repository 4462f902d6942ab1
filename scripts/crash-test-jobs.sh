#!/usr/bin/env bash
# Crash test of the job queue: three `refill worker` processes work N probe jobs while one of them is
# killed with SIGKILL (and restarted) KILLS times at random moments. Each probe commits one effect row
# in the same transaction as its fenced completion. Afterwards every job must be completed with
# exactly one effect, and none may be left available or running.
#
# Usage: scripts/crash-test-jobs.sh [postgres|sqlite]
# Environment: JOBS (5000), KILLS (50), WORK_MS (25), SEED (random), REFILL_BIN (target/debug/refill,
# built if missing), REFILL_TEST_POSTGRES_URL (postgres://postgres@127.0.0.1:5432/postgres).
# Exit status 0 when every job was done exactly once in effect.
set -euo pipefail

backend="${1:-postgres}"
jobs="${JOBS:-5000}"
kills="${KILLS:-50}"
work_ms="${WORK_MS:-25}"
seed="${SEED:-$RANDOM}"
RANDOM=$seed
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${REFILL_BIN:-$root/target/debug/refill}"
if [[ ! -x "$bin" ]]; then
  (cd "$root" && cargo build --bin refill)
fi
run="$(mktemp -d)"
admin_url="${REFILL_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
database=""
case "$backend" in
  postgres)
    database="refill_crash_$$"
    psql "$admin_url" -qc "create database $database" >/dev/null
    url="${admin_url%/*}/$database"
    ;;
  sqlite) url="sqlite:$run/crash.db" ;;
  *) echo "usage: $0 [postgres|sqlite]" >&2; exit 2 ;;
esac

declare -a pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ -n "$database" ]]; then psql "$admin_url" -qc "drop database if exists $database with (force)" >/dev/null || true; fi
  rm -rf "$run"
}
trap cleanup EXIT

refill() { "$bin" --config "$root/config" --database "$url" "$@"; }
start_worker() {
  local i=$1
  # Run the binary itself in the background (not a shell function): $! must be the worker's own pid.
  RUST_LOG=warn "$bin" --config "$root/config" --database "$url" worker --id "w$i" --lease 3 --heartbeat 1 --concurrency 2 --poll-ms 100 --no-schedules \
    >>"$run/w$i.log" 2>&1 &
  pids[$i]=$!
}

echo "crash test: backend=$backend jobs=$jobs kills=$kills work_ms=$work_ms seed=$seed"
refill jobs enqueue-probes --count "$jobs" --work-ms "$work_ms"
for i in 1 2 3; do start_worker "$i"; done
SECONDS=0
for round in $(seq 1 "$kills"); do
  sleep "0.$((RANDOM % 6 + 2))"
  i=$((RANDOM % 3 + 1))
  kill -9 "${pids[$i]}" 2>/dev/null || true
  wait "${pids[$i]}" 2>/dev/null || true
  printf 'kill %2d: worker w%d (pid %d) at +%ds\n' "$round" "$i" "${pids[$i]}" "$SECONDS"
  start_worker "$i"
done

# Let the survivors finish: expired leases come back after 3 s; allow up to 5 minutes.
deadline=$(( $(date +%s) + 300 ))
while :; do
  line="$(refill jobs audit-probes || true)"
  unfinished="$(sed -n 's/.* \([0-9]*\) unfinished,.*/\1/p' <<<"$line")"
  [[ "$unfinished" == "0" ]] && break
  if (( $(date +%s) > deadline )); then echo "timed out: $line"; break; fi
  alive=0
  for i in 1 2 3; do kill -0 "${pids[$i]}" 2>/dev/null && alive=$((alive + 1)); done
  if (( alive == 0 )); then echo "every worker exited: $line"; break; fi
  sleep 1
done
for i in 1 2 3; do kill -TERM "${pids[$i]}" 2>/dev/null || true; done
wait 2>/dev/null || true
pids=()
refill jobs status | sed -n '1,6p'
if refill jobs audit-probes; then
  echo "PASS: $jobs jobs, $kills kills (seed $seed): every job done exactly once in effect, none stuck"
else
  echo "FAIL (seed $seed); last worker log lines:"
  for i in 1 2 3; do tail -n 5 "$run/w$i.log" | sed "s/^/  w$i: /"; done
  exit 1
fi
