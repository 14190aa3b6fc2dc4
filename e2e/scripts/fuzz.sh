#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz, libFuzzer) of the Avro decoder and the Confluent
# framing: the targets in worker/decode/fuzz/fuzz_targets.
#   decode_bytes   arbitrary bytes, bare or framed, into every schema of the corpus
#   valid_records  valid bodies generated from the fuzzer's bytes: each must decode
#
#   bash e2e/scripts/fuzz.sh                # the long run: 5,000,000 inputs per target
#   bash e2e/scripts/fuzz.sh --runs N       # N inputs per target
#   bash e2e/scripts/fuzz.sh --seconds S    # S seconds per target (test-all.sh: a short run)
#
# Any panic, an allocation over 512 MiB (AddressSanitizer's malloc hook) or an RSS over
# 2 GiB fails the run, with the input saved under the corpus directory's artifacts. The
# corpus is kept in $SPILLWAY_CACHE/fuzz, outside the clone, so later runs start from it.
# cargo-fuzz passes nightly-only flags (-Zsanitizer); RUSTC_BOOTSTRAP=1 lets the stable
# toolchain take them, for this build only.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
# shellcheck source=env.sh
source e2e/scripts/env.sh

limit=(-runs=5000000)
case "${1:-}" in
  --runs) limit=(-runs="${2:?--runs N}") ;;
  --seconds) limit=(-max_total_time="${2:?--seconds S}") ;;
  "") ;;
  *) echo "usage: $0 [--runs N | --seconds S]" >&2; exit 2 ;;
esac

bash e2e/scripts/install-services.sh fuzz
export CARGO_TARGET_DIR="$SPILLWAY_CACHE/target-fuzz"
export RUSTC_BOOTSTRAP=1
fuzz_dir=worker/decode/fuzz
work="$SPILLWAY_CACHE/fuzz"
mkdir -p "$work"

cargo fuzz build --fuzz-dir "$fuzz_dir" -O -s address >&2

total=0
for target in decode_bytes valid_records; do
  corpus="$work/corpus/$target" artifacts="$work/artifacts/$target"
  mkdir -p "$corpus" "$artifacts"
  log="$work/$target.log"
  started=$SECONDS
  if ! cargo fuzz run --fuzz-dir "$fuzz_dir" -O -s address "$target" "$corpus" -- \
      "${limit[@]}" -max_len=4096 -malloc_limit_mb=512 -rss_limit_mb=2048 \
      -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz: $target FAILED (input and log under $work)" >&2
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -n 1)
  secs=$((SECONDS - started))
  total=$((total + ${runs:-0}))
  printf 'fuzz: %-14s %10s inputs in %4ss (%s/s), peak RSS %s MiB, corpus %s files\n' \
    "$target" "${runs:-?}" "$secs" "$(( ${runs:-0} / (secs > 0 ? secs : 1) ))" "${rss:-?}" \
    "$(find "$corpus" -type f | wc -l)"
done
echo "fuzz: $total inputs in all, no panic, no allocation over the limits"
