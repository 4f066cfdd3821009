#!/usr/bin/env bash
# Opt-in measurement (not in CI): how many small idle Omega nodes one machine holds.
#
# Boots N idle production images as separate `omega run` processes (each its own QEMU, no
# bundle, the smallest guest memory the monitor accepts), waits until each monitor is up and
# its session idle, then reports the resident memory (RSS) per VM, QEMU and launcher apart,
# and the projection for a 24 GiB machine. Stops early when the machine's available memory
# falls under a floor. Prints one summary line at the end (docs/fleet.md has the figure).
#
#   OMEGA_FLEET_DENSITY=1 bash scripts/fleet-density.sh [N]      (default N = 8)
#
# Env: OMEGA_LAUNCHER (an `omega` binary; default: build it), OMEGA_IMAGE (default target/omega/omega.bin), OMEGA_DENSITY_MEMORY (MiB, default 64:
# the loader refuses less, see qemu-tests/tests/boot.rs `refuses_too_little_memory`),
# OMEGA_DENSITY_FLOOR_MIB (stop when MemAvailable is below it, default 2048),
# OMEGA_DENSITY_SETTLE (seconds to idle before sampling, default 20).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${OMEGA_FLEET_DENSITY:-}" != 1 ]; then
  echo "fleet-density: opt-in; set OMEGA_FLEET_DENSITY=1 (boots N QEMU guests)" >&2
  exit 0
fi
N=${1:-8}
MEM=${OMEGA_DENSITY_MEMORY:-64}
FLOOR=${OMEGA_DENSITY_FLOOR_MIB:-2048}
SETTLE=${OMEGA_DENSITY_SETTLE:-20}
IMAGE=${OMEGA_IMAGE:-$PWD/target/omega/omega.bin}
[ -f "$IMAGE" ] || { echo "no image at $IMAGE (cargo run --release -p image-build -- --out $IMAGE)" >&2; exit 1; }
# OMEGA_LAUNCHER: an `omega` binary already built (default: build this tree's, release).
if [ -n "${OMEGA_LAUNCHER:-}" ]; then
  OMEGA=$OMEGA_LAUNCHER
else
  cargo build -q --release -p omega-host
  OMEGA=$PWD/target/release/omega
fi
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
avail_mib() { awk '/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
# PSS: shared pages (the QEMU binary's libraries) counted once across all processes.
pss_kib() { awk '/^Pss:/ { print $2 }' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }

before=$(avail_mib)
echo "fleet-density: $N idle nodes of $MEM MiB, image $IMAGE; MemAvailable $before MiB" >&2
started=0
for i in $(seq 1 "$N"); do
  if [ "$(avail_mib)" -lt "$FLOOR" ]; then
    echo "fleet-density: MemAvailable under $FLOOR MiB after $started nodes: stopping" >&2
    break
  fi
  "$OMEGA" run --image "$IMAGE" --memory "$MEM" --log-dir "$WORK/node$i" \
    --connect-timeout 120 >"$WORK/node$i.out" 2>&1 &
  PIDS+=($!)
  started=$i
done
# A node counts once its monitor has answered the launcher (the channel is up: idle, waiting).
deadline=$((SECONDS + 60 + 30 * started))
for i in $(seq 1 "$started"); do
  until grep -q "guest handshake done" "$WORK/node$i.out" 2>/dev/null; do
    if [ $SECONDS -gt $deadline ] || ! kill -0 "${PIDS[$((i - 1))]}" 2>/dev/null; then
      echo "fleet-density: node $i did not come up:" >&2
      tail -5 "$WORK/node$i.out" >&2
      exit 1
    fi
    sleep 1
  done
done
sleep "$SETTLE"
total_q=0
total_l=0
total_p=0
for i in $(seq 1 "$started"); do
  l=${PIDS[$((i - 1))]}
  kill -0 "$l" 2>/dev/null || { echo "fleet-density: node $i exited:" >&2; tail -5 "$WORK/node$i.out" >&2; exit 1; }
  q=$(pgrep -P "$l" -f qemu-system | head -1)
  rq=$(rss_kib "$q")
  rl=$(rss_kib "$l")
  total_q=$((total_q + rq))
  total_l=$((total_l + rl))
  pq=$(pss_kib "$q")
  pl=$(pss_kib "$l")
  total_p=$((total_p + pq + pl))
  printf 'node %3d: RSS qemu %6d KiB, launcher %6d KiB; PSS both %6d KiB\n' "$i" "$rq" "$rl" $((pq + pl))
done
after=$(avail_mib)
per=$(((total_q + total_l) / started))
echo "fleet-density: $started nodes up; RSS per node $((per / 1024)) MiB (qemu $((total_q / started / 1024)) MiB + launcher $((total_l / started / 1024)) MiB); MemAvailable fell $((before - after)) MiB ($(((before - after) / started)) MiB per node)"
pss=$((total_p / started))
echo "fleet-density: PSS per node $((pss / 1024)) MiB; load average $(cut -d' ' -f1-3 /proc/loadavg)"
proj=$((24 * 1024 * 1024 / per))
proj_pss=$((24 * 1024 * 1024 / pss))
proj_avail=$((24 * 1024 / ((before - after) / started > 0 ? (before - after) / started : 1)))
echo "fleet-density: projection for 24 GiB (no room kept for the host): $proj nodes by RSS, $proj_pss by PSS, $proj_avail by MemAvailable"
