#!/bin/sh
# Run every benchmark and regenerate docs/BENCHMARKS.md (each script rewrites its section).
# Waits up to WAIT_LOAD (default 180) seconds per benchmark for the load average to fall below 1.0.
set -eu
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
rm -f docs/BENCHMARKS.md
"$PYTHON" bench/bench_core.py --wait-load "${WAIT_LOAD:-180}" "$@"
"$PYTHON" bench/bench_daemon.py --wait-load "${WAIT_LOAD:-180}"
"$PYTHON" bench/bench_compare.py
"$PYTHON" bench/bench_log_lines.py --backup
"$PYTHON" bench/bench_scale.py
echo "docs/BENCHMARKS.md regenerated"
