#!/usr/bin/env bash
# Fault test: the SQLite database's disk fills up, then turns read-only, in the middle of work. On a
# small tmpfs (root: it mounts one), the demo clinic is built, the disk is filled with a filler file,
# and the daily pipeline of the next day is run: it must fail with a clear error (no panic), leave the
# file intact (`PRAGMA integrity_check` = ok, audit chain intact), and complete once space is freed.
# Then the file system is remounted read-only: a write must fail clearly, reads must work, and after
# remounting read-write the next write must succeed.
#
# Usage: scripts/sqlite-disk-full.sh (as root, for mount)
# Environment: PATIENTS (150), SIZE_MB (8), REFILL_BIN (target/debug/refill).
# Exit status 0 when every check holds.
set -euo pipefail

patients="${PATIENTS:-150}"
size_mb="${SIZE_MB:-8}"
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${REFILL_BIN:-$root/target/debug/refill}"
[[ -x "$bin" ]] || (cd "$root" && cargo build --bin refill)
run="$(mktemp -d)"
disk="$run/disk"
mkdir -p "$disk"
mount -t tmpfs -o "size=${size_mb}m" tmpfs "$disk"
cleanup() {
  umount "$disk" 2>/dev/null || true
  rm -rf "$run"
}
trap cleanup EXIT

db="$disk/refill.db"
refill() { "$bin" --database "sqlite:$db" "$@"; }
integrity() { python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('pragma integrity_check').fetchone()[0])" "$db"; }
tomorrow="$(date -d tomorrow +%F)"
after="$(date -d '2 days' +%F)"
failures=0
check() { if eval "$2"; then echo "ok    $1"; else echo "FAIL  $1"; failures=$((failures + 1)); fi; }

"$bin" demo --no-serve --patients "$patients" --db "$db" >/dev/null
echo "disk full test: patients=$patients tmpfs=${size_mb} MiB, database with its WAL $(du -ck "$db"* | tail -1 | cut -f1) KiB"

# Fill the disk, leaving a few KiB: the next day's decisions cannot all be written.
dd if=/dev/zero of="$disk/filler" bs=4k 2>/dev/null || true
rm -f "$disk/filler.tail"; dd if=/dev/zero of="$disk/filler.tail" bs=4k count=1 2>/dev/null || true
rm -f "$disk/filler.tail"
set +e
out="$(refill jobs run-daily --date "$tomorrow" 2>&1)"; status=$?
set -e
echo "  run-daily on a full disk: exit $status: $(tail -1 <<<"$out")"
check "the run fails when the disk is full" '[[ $status != 0 ]]'
check "the error says the disk is full" 'grep -qi "full" <<<"$out"'
check "and says it once" '[[ $(grep -oi "disk is full" <<<"$out" | wc -l) == 1 ]]'
check "no panic" '! grep -qi "panicked" <<<"$out"'
check "integrity_check after the failure" '[[ "$(integrity)" == ok ]]'
rm -f "$disk/filler"
out="$(refill jobs run-daily --date "$tomorrow" 2>&1)"; status=$?
check "the run completes once space is freed (exit $status)" '[[ $status == 0 ]]'
check "audit chain intact after recovery" 'refill audit verify --checkpoint-file "$run/cp.log" 2>/dev/null | grep -q "audit chain intact"'

# Read-only: writes fail clearly, reads work, and writing works again after remounting read-write.
mount -o remount,ro "$disk"
set +e
out="$(refill jobs run-daily --date "$after" 2>&1)"; status=$?
set -e
echo "  run-daily on a read-only file system: exit $status: $(tail -1 <<<"$out")"
check "a write on a read-only file system fails" '[[ $status != 0 ]]'
check "the error says read-only" 'grep -qiE "read-?only" <<<"$out"'
check "no panic" '! grep -qi "panicked" <<<"$out"'
mount -o remount,rw "$disk"
check "integrity_check after the read-only spell" '[[ "$(integrity)" == ok ]]'
out="$(refill jobs run-daily --date "$after" 2>&1)"; status=$?
check "writes work again after remounting read-write (exit $status)" '[[ $status == 0 ]]'
echo "failures: $failures"
(( failures == 0 ))
