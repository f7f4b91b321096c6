#!/usr/bin/env bash
# CI smoke run of every cargo-fuzz target: about SMOKE_SECONDS (default 30)
# each, seeded from the committed corpus in fuzz/seeds/<target>/. Any crash,
# failed assertion, leak, sanitizer report or hang (an input running longer
# than SMOKE_TIMEOUT seconds, default 20) fails the script.
#
# Sanitizer: nightly with AddressSanitizer (cargo-fuzz's default). The bugs a
# reclamation library must not have are use-after-free and double free, and
# ASan reports them at the faulting access, where `--sanitizer none` would
# only notice if the freed memory happened to look wrong. It costs nothing
# extra in CI: .ci/run already installs nightly (Miri and TSan). ASan makes
# each input several times slower, which a 30-second smoke run can afford.
#
# Run from anywhere: `fuzz/smoke.sh [TARGET...]` (default: every target).
set -euo pipefail
cd "$(dirname "$0")"

seconds=${SMOKE_SECONDS:-30}
timeout=${SMOKE_TIMEOUT:-20}

# Same bootstrap as .ci/run (idempotent, about 0.2 s when present).
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
rustup +nightly component add rust-src >/dev/null
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

start=$SECONDS
# One build for all targets (they share every dependency).
cargo +nightly fuzz build
for t in "${targets[@]}"; do
  printf '\n=== fuzz smoke: %s, %ss, AddressSanitizer\n' "$t" "$seconds"
  mkdir -p "corpus/$t" "seeds/$t"
  log="target/smoke-$t.log"
  mkdir -p target
  # New inputs go to the first (ignored) directory; the seeds stay as committed.
  if ! cargo +nightly fuzz run "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$seconds" -timeout="$timeout" -max_len=1024 -print_final_stats=1 \
    >"$log" 2>&1; then
    tail -n 80 "$log"
    echo "fuzz smoke: $t FAILED (reproducer in fuzz/artifacts/$t/, log in fuzz/$log)"
    exit 1
  fi
  grep -E '^(INFO: Seed|#[0-9]+[[:space:]]+DONE|Done |stat::number_of_executed_units|stat::peak_rss)' "$log" || true
done

# Self-check: the engine target must catch a broken engine (rcu-core's
# `--cfg rcu_broken_synchronize` ends grace periods without waiting for
# readers). Without a sanitizer, so the failure must come from the target's
# own alive-flag assertion. Here it fails on the seed corpus, in under a second.
if [[ " ${targets[*]} " == *" engine "* ]]; then
  printf '\n=== fuzz self-check: the engine target on a broken engine\n'
  broken_log=target/smoke-engine-broken.log
  rm -rf target/broken-corpus target/broken-artifacts && mkdir -p target/broken-corpus target/broken-artifacts
  if RUSTFLAGS="--cfg rcu_broken_synchronize" cargo +nightly fuzz run --sanitizer none \
    --target-dir target/broken engine target/broken-corpus seeds/engine -- \
    -max_total_time=60 -timeout="$timeout" -max_len=1024 \
    -artifact_prefix=target/broken-artifacts/ >"$broken_log" 2>&1; then
    echo "fuzz self-check FAILED: the engine target passed a broken engine"; exit 1
  fi
  grep -q "was dropped while a reader that loaded it is inside its critical section" "$broken_log" || {
    tail -n 40 "$broken_log"; echo "fuzz self-check FAILED: not the expected assertion"; exit 1; }
  echo "caught, as it must be: $(grep -m1 'was dropped while a reader' "$broken_log")"
fi
printf '\nfuzz smoke: %s target(s) passed in %ss\n' "${#targets[@]}" "$((SECONDS - start))"
