#!/usr/bin/env bash
# Throughput of `refill worker` against pgbench running the identical claim/complete SQL on the same
# PostgreSQL database (jobs-and-email.md §5.1). Both work the same preloaded queue of probe jobs with no
# effects (claim + fenced complete: two statements per job, each its own commit); the rate is measured
# on the database side from finalized_at over the steady window (the first 3 s dropped).
#
# Modes: pgbench single (LIMIT 1), worker single (--batch 1), worker batched (--batch K: one claim
# statement for K jobs and one transaction completing them with one statement).
#
# Usage: benches/queue_ratio.sh   (env: CLIENTS=4 SECONDS_PER_RUN=15 ROUNDS=3 PRELOAD=200000 BATCH=16
#                                        REFILL_BIN=target/release/refill REFILL_TEST_POSTGRES_URL=...)
set -euo pipefail
clients="${CLIENTS:-4}"
duration="${SECONDS_PER_RUN:-15}"
rounds="${ROUNDS:-3}"
preload="${PRELOAD:-200000}"
batch="${BATCH:-16}"
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${REFILL_BIN:-$root/target/release/refill}"
[[ -x "$bin" ]] || (cd "$root" && cargo build --release --bin refill)
admin_url="${REFILL_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
database="refill_bench_$$"
url="${admin_url%/*}/$database"
work="$(mktemp -d)"
psql "$admin_url" -qc "create database $database"
trap 'psql "$admin_url" -qc "drop database if exists $database with (force)" >/dev/null; rm -rf "$work"' EXIT
refill() { "$bin" --config "$root/config" --database "$url" "$@"; }
sql() { psql "$url" -qtAc "$1"; }

# The statements of crates/refill-store/src/jobs.rs (POSTGRES_CLAIM_SQL, POSTGRES_COMPLETE_SQL), with
# pgbench variables in place of $1..$4.
claim() {
  cat <<SQL
WITH next AS MATERIALIZED ( SELECT id FROM job WHERE state = 'available' AND queue = :queue AND run_at <= now() ORDER BY priority, run_at, id LIMIT $1 FOR UPDATE SKIP LOCKED) UPDATE job j SET state = 'running', attempt = j.attempt + 1, lease_owner = :worker, lease_token = gen_random_uuid(), lease_expires_at = now() + make_interval(secs => :lease), attempted_at = now() FROM next WHERE j.id = next.id RETURNING j.id, j.kind, j.payload, j.attempt, j.max_attempts, j.unique_key, j.lease_token::text AS lease_token
SQL
}
{
  claim 1 | tr -d '\n'; echo ' \gset'
  echo "UPDATE job SET state = 'completed', finalized_at = now(), lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL WHERE id = :id AND lease_token = :lease_token::uuid AND state = 'running';"
} >"$work/work.sql"
refill jobs status >/dev/null   # migrate
reset_queue() {
  sql "TRUNCATE job, job_effect" && sql "VACUUM (FULL, ANALYZE) job"
  refill jobs enqueue-probes --count "$preload" --no-effect >/dev/null
  sql "VACUUM ANALYZE job"
}
rate() {
  sql "SELECT round(count(*) / extract(epoch FROM max(finalized_at) - min(finalized_at))) FROM job
       WHERE state = 'completed' AND finalized_at > (SELECT min(finalized_at) + interval '3 seconds' FROM job)"
}
run_mode() {
  case "$1" in
    pgbench) pgbench -n -M prepared -c "$clients" -j "$clients" -T "$duration" -D queue=default -D worker=pgbench \
               -D lease=30 -f "$work/work.sql" "$url" >"$work/pgbench.log" 2>&1 ;;
    worker) timeout -s TERM "$duration" "$bin" --config "$root/config" --database "$url" worker --id bench \
               --concurrency "$clients" --batch 1 --no-schedules --queue default >/dev/null 2>&1 || true ;;
    worker-batch) timeout -s TERM "$duration" "$bin" --config "$root/config" --database "$url" worker --id bench \
               --concurrency "$clients" --batch "$batch" --no-schedules --queue default >/dev/null 2>&1 || true ;;
  esac
}
echo "nproc=$(nproc) $(psql "$url" -tAc 'select version()' | cut -d' ' -f1-2) clients=$clients duration=${duration}s preload=$preload batch=$batch"
declare -A results
for round in $(seq 1 "$rounds"); do
  modes=(pgbench worker worker-batch)
  (( round % 2 == 0 )) && modes=(worker-batch worker pgbench)
  for mode in "${modes[@]}"; do
    reset_queue
    run_mode "$mode"
    r="$(rate)"
    results[$mode]="${results[$mode]:-} $r"
    echo "round $round $mode: $r jobs/s"
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
p=$(echo "${results[pgbench]}" | median); w=$(echo "${results[worker]}" | median); b=$(echo "${results[worker-batch]}" | median)
echo "median jobs/s: pgbench $p (runs:${results[pgbench]}), worker $w (runs:${results[worker]}), worker batch $b (runs:${results[worker-batch]})"
awk -v p="$p" -v w="$w" -v b="$b" 'BEGIN { printf "ratio worker/pgbench = %.2f; batched worker/pgbench single = %.2f\n", w / p, b / p }'
