#!/usr/bin/env bash
# Resident memory of the release gateway: idle on the default config, with a 10,000-API
# config, and across 1,000 reloads through the admin API (old snapshots must be freed).
# Everything runs on 127.0.0.1; every loop is bounded. Prints one line per figure.
set -euo pipefail
cd "$(dirname "$0")/.."
RELOADS=${RELOADS:-1000}
BIG_RELOADS=${BIG_RELOADS:-20}
cargo build --release -q -p gateway -p benches
GW=target/release/gateway
work=$(mktemp -d)
pid=
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT

rss() { awk '/VmRSS/ {print $2}' /proc/$1/status; }   # KiB
start() { # config-file admin-port
  $GW run --config "$1" >/dev/null 2>"$work/gw.err" & pid=$!
  for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$2/readyz" >/dev/null && return 0; sleep 0.1; done
  echo "gateway did not start: $(cat "$work/gw.err")" >&2; exit 1
}
put() { # file admin-port: applies the file and fails unless the API says it changed
  local out
  out=$(curl -s -X PUT -H 'content-type: application/yaml' --data-binary @"$1" "http://127.0.0.1:$2/v1/config")
  case "$out" in *'"changed":true'*) ;; *) echo "reload failed: ${out:0:300}" >&2; exit 1;; esac
}

# 1. Idle, default config (admin on 9900 / traffic on 8080 as shipped).
cp conf/gateway.yaml "$work/default.yaml"
start "$work/default.yaml" 9900
for _ in $(seq 1 100); do curl -s -o /dev/null http://127.0.0.1:8080/demo/v1/hello; done
sleep 1; echo "idle_default_rss_kib $(rss $pid)"
# 2. Reloads of the default config, alternating two documents.
# The alternates are separate files: a PUT rewrites the served config file itself.
cp "$work/default.yaml" "$work/default-a.yaml"
sed 's/"hello":"world"/"hello":"again"/' "$work/default.yaml" > "$work/default-b.yaml"
before=$(rss $pid)
for i in $(seq 1 "$RELOADS"); do
  if [ $((i % 2)) -eq 0 ]; then put "$work/default-a.yaml" 9900; else put "$work/default-b.yaml" 9900; fi
done
sleep 1; echo "default_reloads=$RELOADS rss_before_kib $before rss_after_kib $(rss $pid)"
kill $pid; wait $pid 2>/dev/null || true

# 3. 10,000 APIs (admin on 18100, traffic on 18099, see benches/src/lib.rs), in a directory
#    of its own so its revision history is its own.
mkdir -p "$work/big" && work="$work/big"
target/release/gen-config 10000 > "$work/big.yaml"
cp "$work/big.yaml" "$work/big-a.yaml"
sed 's#/items/{id}/parts#/items/{id}/pieces#' "$work/big.yaml" > "$work/big-b.yaml"
start "$work/big.yaml" 18100
sleep 1; echo "idle_10k_apis_rss_kib $(rss $pid)"
before=$(rss $pid)
t0=$(date +%s%N)
for i in $(seq 1 "$BIG_RELOADS"); do
  if [ $((i % 2)) -eq 0 ]; then put "$work/big-a.yaml" 18100; else put "$work/big-b.yaml" 18100; fi
done
t1=$(date +%s%N)
sleep 1; echo "10k_apis_reloads=$BIG_RELOADS rss_before_kib $before rss_after_kib $(rss $pid) ms_per_reload $(( (t1 - t0) / 1000000 / BIG_RELOADS ))"
