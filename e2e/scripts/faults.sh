#!/usr/bin/env bash
# The fault suites at full scale (worker/tests/faults_at_scale.rs with
# SPILLWAY_FAULT_SCALE=full): 1,000,000 records on 8 partitions, `spillway run` SIGKILLed
# 20 times (Delta and Parquet on S3), 3 rounds of scaling 1 → 3 → 1 workers while
# producing, a SIGSTOPped zombie per sink, a 60 s registry outage. Every table read back
# by our code and Python's. Installs and starts Kafka and moto as the test suite does;
# about an hour on 2 cores. Prints each suite's time and its figures (stderr of the tests).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
# shellcheck source=env.sh
source e2e/scripts/env.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$SPILLWAY_CACHE/target}"
bash e2e/scripts/install-services.sh nextest
bash e2e/scripts/install-services.sh kafka
bash e2e/scripts/install-services.sh venv
trap 'bash e2e/scripts/stop-services.sh' EXIT
eval "$(bash e2e/scripts/start-services.sh kafka)"
eval "$(bash e2e/scripts/start-services.sh moto)"
export SPILLWAY_FAULT_SCALE=full
cargo nextest run --workspace --locked --profile faults -E 'binary(faults_at_scale)' "$@"
