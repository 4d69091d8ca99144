#!/usr/bin/env bash
# The batch scenario of an earlier commit and of this checkout, alternated in one session, so that
# a machine's speed (which moves by 4x between the project's machines, and by ±15% within an hour)
# cancels out of their ratio.
#
#   bench/compare_commits.sh e289750                 # the issue-8 code against this checkout
#   ROUNDS=3 DURATION=20s bench/compare_commits.sh e289750
#
# The earlier commit runs its own bench/run.py (no --redis when it has no such option); this
# checkout runs with dedup and rate limits through Redis (REDIS_URL, default db 10), as issue 9's
# targets say. Prints each run's batch lines and the ratio of the totals.
set -euo pipefail
cd "$(dirname "$0")/.."
old="${1:?usage: bench/compare_commits.sh COMMIT}"
rounds="${ROUNDS:-2}"
duration="${DURATION:-15s}"
redis="${REDIS_URL:-redis://127.0.0.1:6379/10}"
work="$(mktemp -d -t sg-compare.XXXXXX)"
trap 'git worktree remove --force "$work/old" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git worktree add --force --detach "$work/old" "$old" >/dev/null
ln -s "$PWD/.venv" "$work/old/.venv"
old_args=(--scenarios batch --connections batch=50 --duration "$duration")
if grep -q -- "--redis" "$work/old/bench/run.py"; then old_args+=(--redis "$redis"); fi

rate() { awk '$1 == "batch" && $2 == "gateway" && $3 == 50 { print $5 }' "$1"; }
old_total=0
new_total=0
for round in $(seq "$rounds"); do
  (cd "$work/old" && .venv/bin/python bench/run.py "${old_args[@]}" >"$work/old.log" 2>&1) || true
  (.venv/bin/python bench/run.py --redis "$redis" --scenarios batch --connections batch=50 \
    --duration "$duration" >"$work/new.log" 2>&1) || true
  o="$(rate "$work/old.log")"
  n="$(rate "$work/new.log")"
  echo "round $round: $old ${o:-?} events/s, this checkout ${n:-?} events/s"
  old_total=$(python3 -c "print($old_total + ${o:-0})")
  new_total=$(python3 -c "print($new_total + ${n:-0})")
done
python3 -c "print(f'this checkout / $old: {$new_total / $old_total:.1%} of batch events/s ($rounds rounds pooled)')"
