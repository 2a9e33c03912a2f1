#!/usr/bin/env bash
# POST /predict under load, with wrk (Debian: apt-get install wrk):
#   1. throughput: as many requests as 64 connections get answered, 20 s;
#   2. latency at ~5,000 requests/s: 54 connections, each waiting 10 ms
#      after every answer (the Lua script's delay(): wrk 4 has no
#      constant-rate mode), 20 s: 54 / (10 ms + ~0.6 ms answer time) is
#      about 5,000/s; wrk prints the achieved rate beside the percentiles.
# The release binary runs benches/api_load.yaml on a free port.
#
#   bash benches/api_load.sh   # DURATION=20s CONNECTIONS=64 PACED_CONNECTIONS=54 PACE_MS=10 THREADS=1
set -euo pipefail
cd "$(dirname "$0")/.."

command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
DURATION=${DURATION:-20s}
CONNECTIONS=${CONNECTIONS:-64}
PACED_CONNECTIONS=${PACED_CONNECTIONS:-54}
PACE_MS=${PACE_MS:-10}
THREADS=${THREADS:-1}

cargo build --release --bin twinflow >&2
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
TWINFLOW_HTTP_ADDR="127.0.0.1:$port" TWINFLOW_LOG_LEVEL=warn \
  target/release/twinflow run benches/api_load.yaml &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -fs "$base/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fs -X POST "$base/predict" -H 'content-type: application/json' \
  -d '{"UCWIT":7.5,"UCAIT":25.0,"UCWF":15.0,"UCAIH":50.0,"AMBT":22.0,"UCTSP":21.0}' >/dev/null

echo "== machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== 1. throughput: wrk -t$THREADS -c$CONNECTIONS -d$DURATION"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s benches/api_predict.lua "$base/predict"

echo "== 2. paced: wrk -t$THREADS -c$PACED_CONNECTIONS -d$DURATION, $PACE_MS ms after each answer per connection"
PACE_MS=$PACE_MS wrk -t"$THREADS" -c"$PACED_CONNECTIONS" -d"$DURATION" --latency -s benches/api_predict.lua "$base/predict"
