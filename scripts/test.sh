#!/usr/bin/env bash
# The whole test suite: installs what the tests need, checks formatting and lints, then runs
# every test, including the end-to-end ones with real OpenVPN servers and clients in network
# namespaces (these need root).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "The end-to-end tests create network namespaces: run this as root (sudo $0)." >&2
  exit 1
fi
scripts/deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
echo "== the plugin under valgrind (leaks, invalid reads and writes)"
cargo test -p ovpn-mfa-plugin --test harness -- --ignored --exact valgrind_finds_no_leaks 2>&1 |
  tee -a "$log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
set -e
count() { grep -E '^test result:' "$log" | grep -oE "[0-9]+ $1" | awk '{s += $1} END {print s + 0}'; }
passed=$(count passed)
failed=$(count failed)
if [ "$status" -ne 0 ] || [ "$failed" -ne 0 ]; then
  echo "tests: $passed passed, $failed failed"
  exit 1
fi

echo "== fuzz smoke run (scripts/fuzz.sh for the long run)"
scripts/fuzz.sh --smoke
echo "tests: $passed passed, $failed failed"
