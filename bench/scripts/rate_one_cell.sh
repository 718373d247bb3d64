#!/usr/bin/env bash
# The connection-setup rate through a TUN forwarder, as `cargo xtask bench`'s rate test (connect,
# one-byte echo, close, 5 s), with `perf stat` of the forwarder's context switches and CPU time
# over 4 s of it.
#
#   bench/scripts/rate_one_cell.sh BINARY CONCURRENCY OUTDIR [forwarder options]
#   bench/scripts/rate_one_cell.sh target/release/tun_forward 1 /tmp/rate
#
# PERF=0: no `perf stat`. Prints connload's `connections=N errors=E seconds=S` and (with perf)
# OUTDIR/perfstat.txt's counts. Everything runs in a network namespace this script creates and
# deletes (also on error): `connload serve` on 127.0.0.1:7000, the forwarder on tun0
# (--redirect 127.0.0.1), `connload rate` to 198.19.0.0/16. Needs root, perf (unless PERF=0)
# and `cargo build --release -p netstack-bench` (for connload).
set -euo pipefail
# shellcheck source=start_forwarder.sh
. "$(dirname "$0")/start_forwarder.sh"
binary=$(realpath "${1:?usage: $0 BINARY CONCURRENCY OUTDIR [forwarder options]}")
concurrency=${2:?usage: $0 BINARY CONCURRENCY OUTDIR [forwarder options]}
out=${3:?usage: $0 BINARY CONCURRENCY OUTDIR [forwarder options]}
shift 3
connload=$(realpath "$(dirname "$0")/../../target/release/connload")
mkdir -p "$out"
open_netns nsrate
start_echo_server "$connload" "$out/serve.log"
start_forwarder "$ns" "$out" "$binary" 1500 "$@" || exit 1
sleep 0.5
perf_pid=
if [ "${PERF:-1}" = 1 ]; then
    perf stat -e context-switches,cpu-migrations,task-clock -p "$FORWARDER_PID" \
        -o "$out/perfstat.txt" -- sleep 4 &
    perf_pid=$!
fi
ip netns exec "$ns" "$connload" rate --base 198.19.0.0 --port 7000 --seconds 5 \
    --concurrency "$concurrency"
if [ -n "$perf_pid" ]; then
    wait "$perf_pid" || true
    grep -E "context-switches|task-clock" "$out/perfstat.txt"
fi
