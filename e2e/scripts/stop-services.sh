#!/usr/bin/env bash
# Stops the services start-services.sh started, by the pids it recorded — nothing else.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
source "$here/env.sh"
bash "$here/k8s.sh" stop
bash "$here/kafka.sh" stop
for name in moto; do
  pidf="$SPILLWAY_RUN/$name.pid"
  [[ -f "$pidf" ]] || continue
  pid="$(cat "$pidf")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
    printf '[stop-services] stopped %s (pid %s)\n' "$name" "$pid" >&2
  fi
  rm -f "$pidf"
done
