#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs the services (cached), checks formatting
# and lints, starts Kafka and moto, runs every test with nextest, then stops the services.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
# shellcheck source=env.sh
source e2e/scripts/env.sh
# One build cache outside the clone, reused by later runs.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$SPILLWAY_CACHE/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
step() { printf '\n=== %s (%ss)\n' "$*" "$SECONDS" >&2; }

step "install services"
bash e2e/scripts/install-services.sh all

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "start services"
trap 'bash e2e/scripts/stop-services.sh' EXIT
eval "$(bash e2e/scripts/start-services.sh all)"

step "tests"
# The cluster e2e (e2e/tests/cluster.rs) needs a Kubernetes API server; say so when it skips.
if [[ -z "${SPILLWAY_E2E_KUBECONFIG:-}" ]]; then
  echo "cluster e2e SKIPPED: SPILLWAY_E2E_KUBECONFIG is not set (no API server on this machine)"
fi
cargo nextest run --workspace --locked --profile ci --no-fail-fast

step "done"
