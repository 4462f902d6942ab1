#!/usr/bin/env bash
# Outbox crash test, full size: kill -9 the email sender at 50 random points while it delivers 1000
# messages through scripts/flaky_smtp.py (which drops 5% of replies after the final dot), then check
# that no message was lost and that every duplicate is explained by a recorded ambiguous send with
# the same Message-ID. Needs python3 with aiosmtpd.
#
#   scripts/outbox_crash_test.sh                 # SQLite file
#   CRASH_BACKEND=postgres scripts/outbox_crash_test.sh   # REFILL_TEST_POSTGRES_URL (default local)
#   CRASH_SEED=1234 scripts/outbox_crash_test.sh # replay a run (the seed is printed)
set -euo pipefail
cd "$(dirname "$0")/.."
export CRASH_ROUNDS="${CRASH_ROUNDS:-50}"
export CRASH_MESSAGES="${CRASH_MESSAGES:-1000}"
export CRASH_DROP="${CRASH_DROP:-0.05}"
exec cargo test -p refill-jobs --test delivery_crash -- --nocapture killing_the_sender_at_random_points_loses_nothing
