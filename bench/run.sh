#!/usr/bin/env bash
# Runs the placement benchmark (built by `make bench`): decisions per second, and spec
# loading plus decision. There is no peer to run beside it here: see bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/bench/bench/placement_bench
[[ -x $bin ]] || { echo "error: $bin is missing: run 'make bench'" >&2; exit 1; }
exec "$bin" --benchmark_min_time=2 --benchmark_repetitions=3 --benchmark_report_aggregates_only=true "$@"
