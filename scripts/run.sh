#!/usr/bin/env bash
# The main job of `make run`. Until the live daemon lands (issue 5), this is the feed path end to end:
# generate a synthetic ITCH 5.0 day once, replay it into the Numba L3 books, and show a final book.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
DAY=replay_data/generated/demo-day.itch.gz
mkdir -p replay_data/generated
[ -f "$DAY" ] || "$BIN/hftmm" gen-itch -o "$DAY" --messages 5000000 --symbols 50 --seed 1
"$BIN/hftmm" replay "$DAY"
SYMBOL=$("$BIN/hftmm" book "$DAY" --depth 1 --json -q | "$BIN/python" -c 'import json, sys; print(next(iter(json.load(sys.stdin))))')
"$BIN/hftmm" book "$DAY" --symbol "$SYMBOL" --depth 5 -q
