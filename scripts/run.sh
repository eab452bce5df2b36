#!/usr/bin/env bash
# The main job of `make run`: the live trading daemon for about a minute against the embedded
# sim-exchange (examples/live.toml: one node quoting AAPL and MSFT with the `touch` strategy on a busy book), with a
# live status line on stderr, then the session report (also written to replay_data/generated/).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
mkdir -p replay_data/generated
"$BIN/hftmm" live --config examples/live.toml --duration "${RUN_SECONDS:-60}" \
    --report replay_data/generated/live-report.json
