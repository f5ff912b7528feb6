#!/bin/sh
# Agent footprint vs fping: one responder on 0.0.0.0, an agent probing
# PEERS addresses 127.2.x.y every INTERVAL over tcp+udp, and fping probing
# the same addresses at the same period; CPU and peak RSS of each.
# Bounded: DURATION (default 60s). Loopback only. Needs root for fping -i 1.
set -eu
cd "$(dirname "$0")/../.."
PEERS=${PEERS:-2500}
INTERVAL=${INTERVAL:-10s}
DURATION=${DURATION:-60s}
PROTOCOLS=${PROTOCOLS:-tcp,udp}
bin=$(mktemp -d)/agent-bench
trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./bench/agent
"$bin" -peers "$PEERS" -interval "$INTERVAL" -duration "$DURATION" -protocols "$PROTOCOLS" "$@"
