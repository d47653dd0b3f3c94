#!/usr/bin/env bash
# Builds pdsim with CUDA (`--features cuda`) on any x86-64 Linux machine, GPU or not: installs
# the compiler from PyPI on first use (scripts/cuda-toolchain.sh), then builds into
# target/cuda/ so the CPU build in target/ stays warm.
#
#   scripts/cuda-build.sh                 # target/cuda/release/pdsim
#   scripts/cuda-build.sh --tests         # also the CUDA test binary (tests/cuda)
#   scripts/cuda-build.sh --check         # type-check only (what CI runs)
#
# Environment: CUDA_COMPUTE_CAP (default 90: H100/H200) picks the GPU architecture candle's
# kernels are compiled for.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=build
case "${1:-}" in
    --tests) mode=tests ;;
    --check) mode=check ;;
    "") ;;
    *) echo "usage: $0 [--tests|--check]" >&2; exit 2 ;;
esac
root=$(scripts/cuda-toolchain.sh)
export PATH="$root/bin:$PATH"
export CUDA_HOME="$root" CUDA_PATH="$root"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export LIBRARY_PATH="$PWD/.cuda/stubs:$root/lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
# Portable x86-64 code (AVX2) rather than this machine's: the binary runs on the GPU machine's
# CPU. pdsim's own AVX-512 kernels pick themselves at run time; on a GPU they are not used.
export RUSTFLAGS="-C target-cpu=x86-64-v3 -L native=$PWD/.cuda/stubs -L native=$root/lib"
export CARGO_TARGET_DIR="$PWD/target/cuda"
# No debug info: the binary travels to the GPU machine (64 MiB for everything).
export CARGO_PROFILE_RELEASE_DEBUG=0
case $mode in
    check) cargo check --release --features cuda --all-targets ;;
    build) cargo build --release --features cuda --bin pdsim ;;
    tests)
        cargo build --release --features cuda --bin pdsim
        cargo test --release --features cuda --test cuda --no-run
        ;;
esac
