#!/usr/bin/env bash
# Measures the sandbox backends' per-activation container cost on the teemate image:
#   docker run --rm        the Docker CLI's own create+attach+start+wait+remove (baseline)
#   docker backend         invoker/internal/sandbox/docker: Create + wait + Destroy
#   oci pool               invoker/internal/sandbox/oci: acquire + per-use config + runc start
#   oci cold               the same without the pool (create on the request path)
# Usage: bench-docker-run.sh [N]   (N runs each, default 30). Needs root, starts dockerd if needed.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-30}
unset NODE_EXTRA_CA_CERTS
deploy/dev/start-dockerd.sh
deploy/images/build.sh teemate >/dev/null

IMG=teemate/teemate:latest
ARGS=(--network none --memory 64m --memory-swap 64m --pids-limit 1024 --cap-drop NET_RAW --cap-drop NET_ADMIN)
for _ in 1 2 3; do docker run --rm "${ARGS[@]}" "$IMG" /sbin/teemate-start /no/config.json >/dev/null 2>&1 || true; done
start=$(date +%s%N)
for _ in $(seq "$N"); do
  docker run --rm "${ARGS[@]}" "$IMG" /sbin/teemate-start /no/config.json >/dev/null 2>&1 || true
done
run_ms=$(awk -v d=$(( $(date +%s%N) - start )) -v n="$N" 'BEGIN{printf "%.1f", d/n/1e6}')

ns_of() { awk '/ns\/op/{for(i=1;i<=NF;i++) if($(i+1)=="ns/op") print $i}'; }
backend_ns=$(go test -run XXX -bench BenchmarkCreateStartWaitRemove -benchtime "${N}x" ./invoker/internal/sandbox/docker | ns_of)
oci_out=$(go test -run XXX -bench 'Benchmark(PoolAcquireStart|ColdCreateStart)' -benchtime "${N}x" ./invoker/internal/sandbox/oci)
pool_ns=$(grep PoolAcquireStart <<<"$oci_out" | ns_of)
cold_ns=$(grep ColdCreateStart <<<"$oci_out" | ns_of)

awk -v run="$run_ms" -v be="$backend_ns" -v pool="$pool_ns" -v cold="$cold_ns" -v n="$N" 'BEGIN{
  printf "runs per case:                               %d\n", n
  printf "docker run --rm (CLI)                        %7.1f ms\n", run
  printf "docker backend create+start+wait+remove      %7.1f ms  (%.2fx of docker run)\n", be/1e6, (be/1e6)/run
  printf "oci pool acquire+start                       %7.1f ms\n", pool/1e6
  printf "oci cold create+start                        %7.1f ms\n", cold/1e6
}'
