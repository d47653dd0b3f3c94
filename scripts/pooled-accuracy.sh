#!/usr/bin/env bash
# Judges a calibration profile, or a change to the simulator, on the executed runs of twelve
# rounds of `pdsim compare --repeat` on the shipped scenarios (the 2-vCPU Intel Xeon,
# 2026-11-29 19:47 to 2026-11-30 06:42 UTC, engine revision 3; 43 runs per topology), pooled in
# one comparison per scenario: the table in docs/accuracy.md's "The Ice Lake Xeon". Nothing
# executes, so it takes a few minutes on any machine and gives the same figures for the same
# build and profile.
#
#   scripts/pooled-accuracy.sh                                  # the committed profile, --max-stolen 3
#   scripts/pooled-accuracy.sh --profile P.toml --max-stolen 2 --out DIR
#   scripts/pooled-accuracy.sh --runs docs/runs/xeon-2026-11-30-afternoon.tar.gz
#
# --runs names another archive of the same layout (<archive name>/<round>/<scenario>/run-K/):
# docs/runs/xeon-2026-11-30-afternoon.tar.gz holds one round executed 2026-11-30 15:01-15:24
# UTC (two runs per topology), after the committed profile was chosen on the night's runs: a
# judge that did not take part in the choice. docs/runs/xeon-amx-2026-11-30.tar.gz holds five
# rounds on another machine, a 2-vCPU Xeon with AMX (2026-11-30 16:55-18:06 UTC); judge them
# with a profile of that machine (--profile profiles/xeon-amx/merged.toml).
# docs/runs/xeon-amx-2026-11-30-rev4.tar.gz holds three rounds there with engine revision 4
# (2026-11-30 20:00-20:39 UTC; --profile profiles/xeon-amx/merged-rev4.toml), and
# docs/runs/xeon-amx-2026-11-30-night.tar.gz four more in a calmer hour, each after a
# calibration that also measured the worker's own wake-up (2026-11-30 21:42-23:04 UTC;
# --profile profiles/xeon-amx/2026-11-30-2251.toml, the one that measured the step's size too).
# docs/runs/xeon-amx-2026-12-01.tar.gz holds six rounds there, the last five after
# calibrations that measured the batch-1 decode step by context (2026-12-01 00:15-02:14 UTC;
# --profile profiles/xeon-amx/merged-2026-12-01.toml). docs/runs/xeon-amx-2026-12-01-morning.tar.gz
# holds six more, with requests arriving on time and, from the 03:48 round on, calibrations that
# measured the decode steps after a wake-up (2026-12-01 02:59-04:29 UTC;
# --profile profiles/xeon-amx/merged-2026-12-01-morning.toml). docs/runs/xeon-emr-2026-12-02.tar.gz
# holds four rounds on a third machine, an Emerald Rapids Xeon (2026-12-02 06:08-07:01 UTC,
# each after a calibration; --profile profiles/xeon-emr/merged-2026-12-02.toml).
# docs/runs/epyc-avx2-2026-12-02.tar.gz holds two rounds on a fourth, an AMD EPYC with AVX2 and
# no AVX-512 (2026-12-02 12:54-13:00 and 16:28-16:36 UTC, each after a calibration;
# --profile profiles/epyc-avx2/merged-2026-12-02.toml, the merge of the two).
#
# The runs' CSVs are in docs/runs/xeon-2026-11-30.tar.gz (each run's requests, trace, iteration
# rows, summary and the CPU share the hypervisor took); the comparisons go under --out (default:
# output/pooled-accuracy), a folder per scenario with its comparison.csv and index.html.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=profiles/calibrated.toml
max_stolen=3
out=output/pooled-accuracy
archive=docs/runs/xeon-2026-11-30.tar.gz
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile="$2"; shift 2 ;;
        --max-stolen) max_stolen="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --runs) archive="$2"; shift 2 ;;
        *) echo "usage: $0 [--profile P.toml] [--max-stolen PCT] [--out DIR] [--runs ARCHIVE.tar.gz]" >&2; exit 2 ;;
    esac
done
[ -f "$archive" ] || { echo "error: $archive is missing" >&2; exit 1; }
[ -f "$profile" ] || { echo "error: no profile at $profile" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xzf "$archive" -C "$work"
runs="$work/$(basename "$archive" .tar.gz)"
[ -d "$runs" ] || { echo "error: $archive does not hold a folder $(basename "$archive" .tar.gz)/" >&2; exit 2; }
pdsim=target/release/pdsim
if [ ! -x "$pdsim" ]; then
    echo "building pdsim (cargo build --release)..." >&2
    cargo build --release --quiet
fi
total=0
as_calibrated=0
paced=0
for scenario in heavy_heavy heavy_light light_heavy light_light; do
    args=()
    for round in "$runs"/*/; do
        args+=(--executed "$round$scenario")
    done
    echo "$scenario: $(ls -d "$runs"/*/ | wc -l) rounds, simulating..." >&2
    "$pdsim" compare "scenarios/$scenario.toml" --profile "$profile" --max-stolen "$max_stolen" \
        "${args[@]}" --out "$out/$scenario" >"$work/$scenario.txt" 2>"$work/$scenario.log" || {
        cat "$work/$scenario.log" >&2
        exit 1
    }
    # "within the goals: 11 of 12 percentiles as calibrated, 12 at the run's pace; ..."
    pattern='^within the goals: ([0-9]+) of ([0-9]+) percentiles as calibrated, ([0-9]+) at .*'
    line=$(grep -E "$pattern" "$work/$scenario.txt") || {
        echo "error: pdsim compare printed no line of figures within the goals for $scenario" >&2
        exit 1
    }
    read -r c f p < <(sed -E "s/$pattern/\\1 \\2 \\3/" <<<"$line")
    echo "$scenario: $c of $f figures within the goal as calibrated, $p at the runs' pace ($out/$scenario/$scenario/compare/latest/index.html)"
    total=$((total + f))
    as_calibrated=$((as_calibrated + c))
    paced=$((paced + p))
done
echo "all four: $as_calibrated of $total within the goal as calibrated, $paced at the runs' pace (profile $profile, runs that lost more than $max_stolen% of the CPU left out)"
