#!/usr/bin/env bash
# Simulation speed benchmark: simulated requests per second for the cluster scenario's
# 8 prefill + 8 decode topology at 10k, 100k and 1M requests, and peak memory, on one core.
# Usage: benches/scaling.sh [topology]   (default split-8p8d)
set -euo pipefail
cd "$(dirname "$0")/.."
topology=${1:-split-8p8d}
cargo build --release --quiet
out=$(mktemp -d)
printf '%-10s %10s %12s %14s %12s\n' requests wall_s req_per_s vs_10k_rate peak_rss_mb
base=""
for n in 10000 100000 1000000; do
  log=$(mktemp)
  # taskset pins to one core: the simulator is single-threaded by design.
  /usr/bin/time -f '%e %M' -o "$log.time" taskset -c 0 ./target/release/pdsim scenarios/sim/cluster_8p8d.toml \
    --only "$topology" --requests "$n" --out "$out" --json > /dev/null 2> "$log"
  read -r wall rss_kb < "$log.time"
  rate=$(python3 -c "print(f'{$n/$wall:.0f}')")
  [ -z "$base" ] && base=$rate
  printf '%-10s %10s %12s %14s %12s\n' "$n" "$wall" "$rate" "$(python3 -c "print(f'{$rate/$base:.2f}')")" "$((rss_kb / 1024))"
done
rm -rf "$out"
