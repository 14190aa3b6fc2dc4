# Shared settings for the e2e service scripts. Sourced, not run.
# Everything is cached under $SPILLWAY_CACHE (default ~/.cache/spillway), outside the clone.
export SPILLWAY_CACHE="${SPILLWAY_CACHE:-$HOME/.cache/spillway}"
export SPILLWAY_TOOLS="$SPILLWAY_CACHE/tools"
export SPILLWAY_RUN="${SPILLWAY_RUN:-$SPILLWAY_CACHE/run}"
export SPILLWAY_KAFKA_VERSION="${SPILLWAY_KAFKA_VERSION:-4.4.0}"
export NEXTEST_VERSION="${NEXTEST_VERSION:-0.9.151}"
export CARGO_FUZZ_VERSION="${CARGO_FUZZ_VERSION:-0.13.2}"
export MOTO_VERSION="${MOTO_VERSION:-5.2.5}"
export KUBERNETES_VALIDATE_VERSION="${KUBERNETES_VALIDATE_VERSION:-1.37.0}"
export KUBECTL_LAYER_VERSION="${KUBECTL_LAYER_VERSION:-2.2.2}"
# Loopback ports of the test services (override to run two suites side by side).
export SPILLWAY_KAFKA_PORT="${SPILLWAY_KAFKA_PORT:-19092}"
export SPILLWAY_S3_PORT="${SPILLWAY_S3_PORT:-15000}"
export SPILLWAY_KAFKA_BOOTSTRAP="127.0.0.1:${SPILLWAY_KAFKA_PORT}"
export SPILLWAY_S3_ENDPOINT="http://127.0.0.1:${SPILLWAY_S3_PORT}"
export PATH="$SPILLWAY_TOOLS/bin:$SPILLWAY_TOOLS/venv/bin:$PATH"
mkdir -p "$SPILLWAY_TOOLS/bin" "$SPILLWAY_RUN"
