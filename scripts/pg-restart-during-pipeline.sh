#!/usr/bin/env bash
# Fault test: PostgreSQL restarted (`pg_ctl restart -m immediate`, a crash restart) in the middle of the
# daily pipeline. Starts its own PostgreSQL cluster on a spare port (never the shared one), imports the
# demo clinic, enqueues the day's pipeline, lets two `refill worker` processes run it, and restarts the
# server RESTARTS times while chunks are being evaluated. Afterwards the pipeline must have completed:
# exactly one decision per active patient for the day (nothing lost, nothing doubled), one queue row
# at most per patient, no dead job, and an intact audit chain.
#
# Usage: scripts/pg-restart-during-pipeline.sh
# Environment: PATIENTS (3000), RESTARTS (3), PORT (55432), REFILL_BIN (target/debug/refill).
# Needs the PostgreSQL server binaries (initdb, pg_ctl) and a `postgres` system user when run as root.
# Exit status 0 when every check holds.
set -euo pipefail

patients="${PATIENTS:-3000}"
restarts="${RESTARTS:-3}"
port="${PORT:-55432}"
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${REFILL_BIN:-$root/target/debug/refill}"
[[ -x "$bin" ]] || (cd "$root" && cargo build --bin refill)
run="$(mktemp -d)"
chmod 755 "$run"
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pgdata="$run/pgdata"
mkdir -p "$pgdata" && chown postgres "$pgdata" 2>/dev/null || true
declare -a pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  as_pg pg_ctl -D "$pgdata" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$run"
}
trap cleanup EXIT

as_pg initdb -D "$pgdata" -U postgres --auth=trust >/dev/null
as_pg pg_ctl -D "$pgdata" -o "-p $port -k $pgdata -c listen_addresses=127.0.0.1" -l "$pgdata/pg.log" -w start >/dev/null
url="postgres://postgres@127.0.0.1:$port/postgres"
refill() { "$bin" --database "$url" "$@"; }

date="$(date +%F)"
echo "pg restart test: patients=$patients restarts=$restarts port=$port date=$date"
"$bin" demo --no-serve --patients "$patients" --db "$run/demo.db" --export-csv "$run/csv" >/dev/null
refill migrate >/dev/null
refill import "$run"/csv/*.csv >/dev/null
refill jobs enqueue-daily --date "$date"
start_worker() {
  RUST_LOG=warn "$bin" --database "$url" worker --id "w$1" --lease 5 --heartbeat 1 --concurrency 2 --poll-ms 100 \
    --no-schedules --queue default >>"$run/w$1.log" 2>&1 &
  pids[$1]=$!
}
start_worker 1
start_worker 2
psql_q() { psql "$url" -Atqc "$1"; }
decided() { psql_q "select count(*) from decisions where clinic_date = '$date'" 2>/dev/null || echo "?"; }
SECONDS=0
for round in $(seq 1 "$restarts"); do
  # Wait until the chunks are under way, then crash-restart the server.
  until [[ "$(decided)" =~ ^[0-9]+$ ]] && (( $(decided) > round * patients / (restarts + 2) )); do sleep 0.2; done
  before="$(decided)"
  t0=$(date +%s.%N)
  as_pg pg_ctl -D "$pgdata" -o "-p $port -k $pgdata -c listen_addresses=127.0.0.1" -l "$pgdata/pg.log" -m immediate -w restart >/dev/null
  # Recovery: the first decision written after the restart.
  until [[ "$(decided)" =~ ^[0-9]+$ ]] && (( $(decided) > before )) ; do
    sleep 0.1
    (( SECONDS > 600 )) && { echo "no progress after restart $round"; exit 1; }
  done
  t1=$(date +%s.%N)
  printf 'restart %d at %d decisions; decisions again after %.1f s\n' "$round" "$before" "$(echo "$t1 - $t0" | bc)"
done
active="$(psql_q "select count(*) from patients where active")"
until (( $(decided) >= active )) && [[ "$(psql_q "select count(*) from job where state in ('available','running') and queue = 'default'")" == 0 ]]; do
  sleep 0.5
  (( SECONDS > 900 )) && { echo "timed out"; break; }
done
decisions="$(decided)"
doubled="$(psql_q "select count(*) from (select patient_id from decisions where clinic_date = '$date' group by patient_id having count(*) > 1) d")"
queue_doubled="$(psql_q "select count(*) from (select patient_id from daily_queue where clinic_date = '$date' group by patient_id having count(*) > 1) q")"
dead="$(psql_q "select count(*) from job where state = 'dead'")"
echo "active patients $active, decisions $decisions, patients decided twice $doubled, queue rows doubled $queue_doubled, dead jobs $dead, total ${SECONDS} s"
verify="$(refill audit verify --checkpoint-file "$run/cp.log" 2>/dev/null | tail -1)"
echo "$verify"
[[ "$decisions" == "$active" && "$doubled" == 0 && "$queue_doubled" == 0 && "$dead" == 0 && "$verify" == *intact* ]]
