#!/usr/bin/env bash
# Coverage-guided fuzzing of ovpn-mfa's parsers with cargo-fuzz (libFuzzer + AddressSanitizer).
#
#   scripts/fuzz.sh                 # every target for 10 minutes (the long run)
#   scripts/fuzz.sh --smoke         # every target for 10 seconds (what the test suite runs)
#   scripts/fuzz.sh TARGET SECONDS  # one target
#
# cargo-fuzz needs nightly-only compiler flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain
# accept them. Seeds live in fuzz/seeds/TARGET (committed); what the fuzzer learns goes to
# fuzz/target/corpus/TARGET and crashes to fuzz/artifacts/TARGET (both ignored by git).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "Installing cargo-fuzz from crates.io"
  cargo install --quiet --locked cargo-fuzz
fi

targets=(credentials password_field secret otpauth_uri config ga_import)
seconds=600
case "${1:-}" in
  --smoke) seconds=10 ;;
  "") ;;
  *) targets=("$1"); seconds=${2:-600} ;;
esac

for target in "${targets[@]}"; do
  [ -f "fuzz_targets/$target.rs" ] || continue
  mkdir -p "target/corpus/$target" "artifacts/$target"
  echo "== fuzz $target for ${seconds}s"
  out=$(cargo fuzz run -O "$target" "target/corpus/$target" "seeds/$target" \
          -- -max_total_time="$seconds" -print_final_stats=1 2>&1) || {
    echo "$out" | tail -40
    echo "fuzz target $target failed; the input is in fuzz/artifacts/$target" >&2
    exit 1
  }
  echo "$out" | grep -E "^Done|stat::number_of_executed_units" | head -2
done
