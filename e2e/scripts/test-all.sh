#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs the services (cached), checks formatting
# and lints, starts Kafka, moto and the Kubernetes control plane, runs every test with
# nextest (the cluster e2e included: it never skips here), fuzzes the decoder for a short
# bounded run, then stops the services.
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
# The cluster e2e (e2e/tests/cluster/) runs against the control plane k8s.sh started.
[[ -n "${SPILLWAY_E2E_KUBECONFIG:-}" ]] || { echo "the control plane did not start" >&2; exit 1; }
export CI="${CI:-true}"
cargo nextest run --workspace --locked --profile ci --no-fail-fast

step "fuzz the decoder (20 s per target)"
bash e2e/scripts/fuzz.sh --seconds 20

step "done"
