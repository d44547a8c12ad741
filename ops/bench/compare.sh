#!/usr/bin/env bash
# Benchmark (issue 19): the audited release side by side with the same SQL over the raw file in
# DataFusion and DuckDB, at 100 000, 1 million and 10 million residents (medians of alternating
# runs), then the small job's latency; the table is printed and appended to ops/bench/RESULTS.md
# with the date and the machine.
#
# Usage: ops/bench/compare.sh [--rounds R] [--small-runs S] [--scales "100000 1000000 10000000"]
# Each scale gets a data folder made by `sandbox demo --scale N` under ~/.cache/sandbox-compare
# (the generated data is kept between runs of the bench: 10 million residents take a minute). A
# licence may start at most 50 production runs a day (a policy can only tighten that), so the
# small job has a folder of its own, and R + 1 and S + 5 stay at most 50.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sandbox-target}"
rounds=5 small=40 scales="100000 1000000 10000000"
while (($#)); do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --small-runs) small=$2; shift 2 ;;
    --scales) scales=$2; shift 2 ;;
    *) echo "usage: $0 [--rounds R] [--small-runs S] [--scales \"N ...\"]" >&2; exit 2 ;;
  esac
done
python3 -c 'import duckdb' 2>/dev/null || ops/setup
bench=$(ops/bench/build-bench compare)
cache="$HOME/.cache/sandbox-compare"
folders=()
for n in small $scales; do
  dir="$cache/$n" scale=$n
  [[ $n == small ]] && scale=100000
  # Each run of the bench starts the folder afresh (a licence's runs are counted per day) but
  # keeps its generated data, the slow part.
  if [[ -d "$dir/catalog" ]]; then mv "$dir/catalog" "$cache/catalog.$n"; fi
  rm -rf "$dir"; mkdir -p "$dir"
  if [[ -d "$cache/catalog.$n" ]]; then mv "$cache/catalog.$n" "$dir/catalog"; fi
  "$CARGO_TARGET_DIR/release/sandbox" demo --data-dir "$dir" --scale "$scale" > "$dir.demo.log" \
    || { cat "$dir.demo.log"; exit 1; }
  [[ $n == small ]] || folders+=("$dir")
done
out=$(mktemp)
script="$PWD/ops/bench/duckdb_query.py"
"$bench" --duckdb "$script" --rounds "$rounds" --small-runs 0 "${folders[@]}" | tee "$out"
echo >> "$out"
"$bench" --duckdb "$script" --rounds 1 --small-runs "$small" "$cache/small" | grep '^small job' | tee -a "$out"
machine="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB"
{
  echo
  echo "### $(date +%F): \`ops/bench/compare.sh --rounds $rounds --small-runs $small\` — $machine"
  echo
  cat "$out"
} >> ops/bench/RESULTS.md
rm -f "$out"
