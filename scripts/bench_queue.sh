#!/usr/bin/env bash
# Load benchmark of the staff queue screen: the first page of /queue (default sort) for a clinic of
# 100,000 patients with 5,000 due today, 50 concurrent clients with wrk on loopback, SQLite.
#
# Method: `refill demo --patients 100000 --no-serve` builds the clinic through the CSV import and runs
# today's pipeline; today's queue is then cut to the 5,000 most urgent rows (the rest are left out of
# today's work, as on a real day). A staff account signs in with curl; wrk sends GET /queue with that
# session cookie from 50 connections for DURATION. Every request is a full page: session check, the
# queue page query, tallies, regimens, presence, and the audit event of the view (group commit).
#
# Usage: scripts/bench_queue.sh [DURATION]   (default 30s; needs a release build: cargo build --release)
# CLINIC_CACHE=path keeps the built clinic (before its queue is cut and a user added) at that path and
# reuses it on later runs, so before/after comparisons run on the same data without the 2-minute build.
# PERF_DATA=path also samples the server with `perf record` (cpu-clock, call graphs) during the run.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-30s}
REFILL=${REFILL:-${CARGO_TARGET_DIR:-target}/release/refill}
PATIENTS=${PATIENTS:-100000}
DUE=${DUE:-5000}
PORT=${PORT:-18181}
WORK=$(mktemp -d)
DB="$WORK/bench.db"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

command -v wrk >/dev/null || { echo "wrk is not installed" >&2; exit 1; }
[ -x "$REFILL" ] || { echo "no release build at $REFILL (cargo build --release)" >&2; exit 1; }

CLINIC_CACHE=${CLINIC_CACHE:-}
if [ -n "$CLINIC_CACHE" ] && [ -f "$CLINIC_CACHE" ]; then
  echo "== reusing the clinic at $CLINIC_CACHE"
  cp "$CLINIC_CACHE" "$DB"
else
  echo "== building a clinic of $PATIENTS patients"
  start=$(date +%s)
  "$REFILL" demo --patients "$PATIENTS" --no-serve --db "$DB" > "$WORK/demo.log"
  echo "   built in $(( $(date +%s) - start )) s"
  if [ -n "$CLINIC_CACHE" ]; then
    sqlite3 "$DB" "pragma wal_checkpoint(truncate)" >/dev/null 2>&1 || true
    cp "$DB" "$CLINIC_CACHE"
  fi
fi

python3 - "$DB" "$DUE" <<'PY'
import sqlite3, sys
db, due = sys.argv[1], int(sys.argv[2])
con = sqlite3.connect(db)
(today,) = con.execute("select max(clinic_date) from daily_queue").fetchone()
con.execute("""delete from daily_queue where clinic_date = ? and id not in (
    select id from daily_queue where clinic_date = ?
    order by (urgency >= 4) desc, run_out_on, urgency desc, patient_id limit ?)""",
    (today, today, due))
con.commit()
(rows,) = con.execute("select count(*) from daily_queue where clinic_date = ?", (today,)).fetchone()
(patients,) = con.execute("select count(*) from patients").fetchone()
print(f"   {patients} patients, {rows} queue rows on {today}")
con.close()
PY

REFILL_PASSWORD=bench-password-123 "$REFILL" --database "sqlite:$DB" user add benchstaff --role staff --name "Bench Staff" >/dev/null
"$REFILL" --database "sqlite:$DB" serve --port "$PORT" > "$WORK/serve.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done

JAR="$WORK/jar"
curl -s -c "$JAR" "http://127.0.0.1:$PORT/login" > "$WORK/login.html"
TOKEN=$(grep -o 'name="csrf" value="[^"]*"' "$WORK/login.html" | sed 's/.*value="//; s/"$//')
curl -s -b "$JAR" -c "$JAR" -o /dev/null -d "username=benchstaff&password=bench-password-123&csrf=$TOKEN" "http://127.0.0.1:$PORT/login"
COOKIE=$(awk '$6 == "refill_session" { print "refill_session=" $7 }' "$JAR")
[ -n "$COOKIE" ] || { echo "sign-in failed" >&2; exit 1; }
rows=$(curl -s -H "Cookie: $COOKIE" "http://127.0.0.1:$PORT/queue" | grep -c 'tr class="row' || true)
echo "   first page has $rows rows"

# The first page of each filter is shared by every screen until something changes (see
# crates/refill-web/src/queue_cache.rs); deeper pages always load from the store, so page 2 (`page=1`)
# shows what a page costs when the cache cannot help (after every change, the first request pays it)
# and the last page (`page=49` of 5,000 rows) what a deep OFFSET costs.
for target in "/queue" "/queue?page=1" "/queue?page=$(( DUE / 100 - 1 ))"; do
  echo "== warm-up 5s $target"
  wrk -t2 -c50 -d5s -H "Cookie: $COOKIE" "http://127.0.0.1:$PORT$target" > /dev/null
  echo "== wrk -t2 -c50 -d$DURATION --latency GET $target"
  echo "   before: $(uptime)"
  PERF_PID=""
  if [ -n "${PERF_DATA:-}" ]; then
    perf record -e cpu-clock -F 999 --call-graph dwarf,16384 -p "$SERVER_PID" -o "$PERF_DATA.$(echo "$target" | tr -c 'a-z0-9\n' _)" \
      -- sleep "${DURATION%s}" 2>/dev/null &
    PERF_PID=$!
  fi
  wrk -t2 -c50 -d"$DURATION" --latency -H "Cookie: $COOKIE" "http://127.0.0.1:$PORT$target"
  echo "   after:  $(uptime)"
  if [ -n "$PERF_PID" ]; then wait "$PERF_PID" || true; fi
done
