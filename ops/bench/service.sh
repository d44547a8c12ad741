#!/usr/bin/env bash
# Benchmark: the service, client to verified release. Prepares a data folder with
# `sandbox demo --scale 100000` (release build), then runs the bench in sandbox/server/benches:
# one client's runs one after another (median, p99), then 16 clients at once (throughput).
# Usage: ops/bench/service.sh [bench arguments, e.g. --runs 30 --clients 16 --per-client 1]
# A licence may start at most 50 production runs a day (a policy can only tighten that): the
# demo's two, three warm-ups, runs and clients × per-client must stay within it.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sandbox-target}"
bench=$(ops/bench/build-bench service)
data="$(mktemp -d)"
trap 'rm -rf "$data"' EXIT
"$CARGO_TARGET_DIR/release/sandbox" demo --data-dir "$data" --scale 100000 > "$data.demo.log" \
    || { cat "$data.demo.log"; exit 1; }
rm -f "$data.demo.log"
"$bench" "$data" "$@"
