#!/usr/bin/env bash
# Fuzzes the scenario parser/validator and the trace readers for 10 minutes (both at once),
# from a fresh seed, in a build with overflow checks and debug assertions on (the `fuzz`
# profile), so wrapped arithmetic panics instead of passing silently.
#   scripts/fuzz.sh [SECONDS] [SEED]
# A failure prints the shrunk input and the seed that reproduces it.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
seed="${2:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
echo "fuzzing for ${seconds} s from seed ${seed}"
PDSIM_FUZZ_SECONDS="$seconds" PDSIM_FUZZ_SEED="$seed" \
    cargo test --profile fuzz --test integration fuzz -- --nocapture --test-threads 2
