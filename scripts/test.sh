#!/usr/bin/env bash
# The whole test suite, on a fresh machine too: installs what it needs, then runs pytest twice
# (README, "Testing"): first the tests marked `parallel` spread over pytest-xdist workers, then every
# other test alone, so that no timing assertion shares the machine with another test. Arguments go to
# both runs. The exit code is pytest's: a failure in either phase fails the whole run; 5 (nothing
# collected) only when neither phase selected a test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Two workers on CI's two cores: the suite waits on targets far more than it computes.
workers=${PEEKA_TEST_WORKERS:-2}

set +e
started=$SECONDS
.venv/bin/python -m pytest -ra --phase parallel -n "$workers" --dist loadgroup "$@"
first=$?
echo "scripts/test.sh: parallel phase ($workers workers) exit $first in $((SECONDS - started)) s" >&2
case $first in 2|3|4) exit $first ;; esac  # interrupted, internal or usage error: the second run would say the same
started=$SECONDS
.venv/bin/python -m pytest -ra --phase serial "$@"
second=$?
echo "scripts/test.sh: serial phase exit $second in $((SECONDS - started)) s" >&2
set -e

if [ "$first" -eq 5 ]; then exit "$second"; fi
if [ "$second" -eq 0 ] || [ "$second" -eq 5 ]; then exit "$first"; fi
if [ "$first" -eq 0 ]; then exit "$second"; fi
exit "$first"
