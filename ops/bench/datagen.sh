#!/usr/bin/env bash
# Benchmark: how fast `sandbox datagen` writes a city, and how fast `sandbox catalog check` reads
# it back. Usage: ops/bench/datagen.sh [SCALE] (default 10000000). Prints one Markdown table row
# to add to ops/bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sandbox-target}"
scale="${1:-10000000}"
cargo build --release --locked -q -p sandbox
bin="$CARGO_TARGET_DIR/release/sandbox"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

/usr/bin/time -f '%e %M' -o "$out/gen.time" "$bin" datagen --scale "$scale" --seed 7 --out "$out/catalog" > "$out/gen.log"
/usr/bin/time -f '%e %M' -o "$out/check.time" "$bin" catalog check "$out/catalog" > /dev/null
rows=$(grep -o 'wrote [0-9]* rows' "$out/gen.log" | grep -o '[0-9]*')
read -r gen_s gen_kb < "$out/gen.time"
read -r check_s check_kb < "$out/check.time"
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)
printf '| %s | %s | %s | %s s | %.1f M rows/s | %d MiB | %s s | %d MiB | %s, %s cores |\n' \
  "$(date +%F)" "$scale" "$rows" "$gen_s" "$(echo "$rows / $gen_s / 1000000" | bc -l)" $((gen_kb / 1024)) \
  "$check_s" $((check_kb / 1024)) "$cpu" "$(nproc)"
