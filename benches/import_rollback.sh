#!/usr/bin/env bash
# A rejected import leaves a 100,000-patient database exactly as it was (issue 4), checked on SQLite and
# PostgreSQL with the real `refill import` binary. The clinic comes from `refill demo --export-csv`;
# its SQLite file (already imported and through the daily pipeline) is the SQLite target, and the same
# CSV files are imported into a fresh PostgreSQL database. Two bad files of 100,000 rows each are then
# imported, and the database's whole content is hashed before and after:
#   1. patients.csv with an impossible birth date (1960-02-30) on data row 50,000: caught by the parser;
#   2. patients.csv with every patient_id and MRN made new, except that data row 50,000 reuses the MRN of
#      a stored patient: caught by the database's unique index after 49,999 rows were inserted in the
#      file's transaction, which must roll back.
# Each must exit 1 naming the file, line 50,001 (BAD_ROW + 1) and the field, and leave the hash unchanged. The
# hash is `sqlite3 .dump` for SQLite and `pg_dump --data-only` for PostgreSQL, without two kinds of
# line: `setval`, because sequences are not transactional in PostgreSQL (a rolled-back insert still
# advances them: ids are skipped, no row changes), and `\restrict`/`\unrestrict`, whose key pg_dump
# draws at random on every run.
#
# Usage: benches/import_rollback.sh   (env: PATIENTS=100000 BAD_ROW=50000 REFILL_BIN=target/release/refill
#                                            REFILL_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres)
set -euo pipefail
patients="${PATIENTS:-100000}"
bad_row="${BAD_ROW:-50000}"
line=$((bad_row + 1))
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${REFILL_BIN:-$root/target/release/refill}"
[[ -x "$bin" ]] || (cd "$root" && cargo build --release --bin refill)
admin_url="${REFILL_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
database="refill_rollback_$$"
work="$(mktemp -d)"
trap 'psql "$admin_url" -qc "drop database if exists $database with (force)" >/dev/null 2>&1; rm -rf "$work"' EXIT
(( patients >= bad_row )) || { echo "PATIENTS must be at least BAD_ROW ($bad_row)" >&2; exit 2; }

echo "generating $patients patients (refill demo --export-csv)"
"$bin" --config "$root/config" demo --patients "$patients" --no-serve --db "$work/demo.db" --export-csv "$work/csv" >/dev/null

# Bad file 1: data row 50,000 (line 50,001) gets an impossible birth date.
awk -F, -v OFS=, -v line="$line" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "birth_date") c = i } NR == line { $c = "1960-02-30" } { print }' \
  "$work/csv/patients.csv" >"$work/patients-bad-date.csv"
# Bad file 2: all rows new (patient ids and MRNs changed), data row 50,000 takes the first stored MRN.
taken_mrn="$(awk -F, 'NR == 2 { print $2 }' "$work/csv/patients.csv")"
awk -F, -v OFS=, -v taken="$taken_mrn" -v line="$line" \
  'NR > 1 { $1 = "NEW-" $1; $2 = "NEW-" $2 } NR == line { $2 = taken } { print }' \
  "$work/csv/patients.csv" >"$work/patients-mrn-clash.csv"

# Import one bad file; it must be refused with file, line and field named, and change nothing.
check() {
  local backend="$1" snapshot="$2" url="$3" file="$4" field="$5"
  local before after status=0
  before="$($snapshot | sha256sum)"
  "$bin" --config "$root/config" --database "$url" import "$work/$file" >"$work/out.log" 2>"$work/err.log" || status=$?
  after="$($snapshot | sha256sum)"
  local named="no"
  grep -q "$file:$line: $field" "$work/err.log" && named="yes"
  if [[ "$status" == 1 && "$named" == yes && "$before" == "$after" ]]; then
    echo "  $backend $file: refused (exit 1, names line $line field $field), content hash unchanged: OK"
  else
    echo "  $backend $file: FAILED (exit $status, names line and field: $named, hash ${before%% *} -> ${after%% *})"
    sed 's/^/    /' "$work/err.log" | head -5
    return 1
  fi
}
sqlite_dump() { sqlite3 "$work/demo.db" .dump; }
pg_dump_data() { pg_dump --data-only --no-owner "$pg_url" | grep -Ev '^(SELECT pg_catalog\.setval|\\restrict |\\unrestrict )'; }

echo "SQLite ($patients patients, demo database)"
check SQLite sqlite_dump "sqlite:$work/demo.db" patients-bad-date.csv birth_date
check SQLite sqlite_dump "sqlite:$work/demo.db" patients-mrn-clash.csv mrn

psql "$admin_url" -qc "create database $database"
pg_url="${admin_url%/*}/$database"
echo "PostgreSQL ($patients patients imported from the same CSV files)"
"$bin" --config "$root/config" --database "$pg_url" import "$work"/csv/*.csv >/dev/null
check PostgreSQL pg_dump_data "$pg_url" patients-bad-date.csv birth_date
check PostgreSQL pg_dump_data "$pg_url" patients-mrn-clash.csv mrn
