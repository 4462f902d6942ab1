#!/usr/bin/env bash
# Wall time and peak memory of the daily pipeline (`refill jobs run-daily`) over a synthetic clinic of
# PATIENTS patients, on SQLite and on PostgreSQL. The clinic comes from `refill demo` (CSV export) and
# is imported into both databases with `refill import`; the pipeline then runs for a clinic date on
# which nothing was evaluated yet, timed by GNU time (-v: "Maximum resident set size"). Right after
# each pipeline run, on the same database, the I/O floor runs (crates/refill-jobs/benches/daily_floor.rs:
# every patient's facts read and one decision row per patient written, no rules), so the ratio
# pipeline / floor is taken in the same minute on the same backend. `uptime` is printed around each.
#
# Usage: benches/daily_pipeline.sh   (env: PATIENTS=100000 DATE=2026-12-02 REFILL_BIN=target/release/refill
#                                           REFILL_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres
#                                           BACKENDS="sqlite postgres" FLOOR_BIN=<daily_floor bench binary>)
set -euo pipefail
patients="${PATIENTS:-100000}"
date="${DATE:-2026-12-02}"
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${REFILL_BIN:-$root/target/release/refill}"
[[ -x "$bin" ]] || (cd "$root" && cargo build --release --bin refill)
backends="${BACKENDS:-sqlite postgres}"
floor="${FLOOR_BIN:-}"
if [[ -z "$floor" ]]; then
  floor="$(cd "$root" && cargo bench -p refill-jobs --bench daily_floor --no-run 2>&1 |
    grep -o 'target/release/deps/daily_floor-[0-9a-f]*' | tail -1)"
  floor="$root/$floor"
fi
admin_url="${REFILL_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
database="refill_daily_$$"
work="$(mktemp -d)"
trap 'psql "$admin_url" -qc "drop database if exists $database with (force)" >/dev/null 2>&1; rm -rf "$work"' EXIT
timed() { /usr/bin/time -v "$@" 2>"$work/time.log"; grep -E "Elapsed \(wall clock\)|Maximum resident" "$work/time.log" | sed 's/^\s*/    /'; }

echo "generating $patients patients (refill demo --export-csv)"
"$bin" --config "$root/config" demo --patients "$patients" --no-serve --db "$work/demo.db" --export-csv "$work/csv" >/dev/null

sqlite_url="sqlite:$work/bench.db"
if [[ " $backends " == *" sqlite "* ]]; then
  echo "SQLite: import, then the daily pipeline for $date, then the floor"
  "$bin" --config "$root/config" --database "$sqlite_url" import "$work"/csv/*.csv >/dev/null
fi
run_and_floor() {
  uptime
  timed "$bin" --config "$root/config" --database "$1" jobs run-daily --date "$date"
  timed "$floor" "$1" "$date"
  uptime
}
if [[ " $backends " == *" sqlite "* ]]; then
  run_and_floor "$sqlite_url"
fi

if [[ " $backends " != *" postgres "* ]]; then
  :
elif psql "$admin_url" -qc "create database $database" 2>/dev/null; then
  pg_url="${admin_url%/*}/$database"
  echo "PostgreSQL: import, then the daily pipeline for $date, then the floor"
  "$bin" --config "$root/config" --database "$pg_url" import "$work"/csv/*.csv >/dev/null
  run_and_floor "$pg_url"
else
  echo "PostgreSQL unreachable: skipped"
fi
