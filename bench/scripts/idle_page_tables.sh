#!/usr/bin/env bash
# Holds COUNT idle TCP connections through a TUN forwarder and prints its RSS and page tables
# (VmRSS, VmPTE) once a second for 8 s: what idle connections cost, including the memory RSS
# leaves out. As `cargo xtask bench`'s idle test, without the bulk transfer after it.
#
#   bench/scripts/idle_page_tables.sh BINARY COUNT [forwarder options]
#   bench/scripts/idle_page_tables.sh target/release/tun_forward 10000 --tcp-buffer 262144
#
# Everything runs in a network namespace this script creates and deletes (also on error):
# `connload serve` on 127.0.0.1:7000 there, the forwarder on tun0 (--redirect 127.0.0.1
# --max-connections COUNT+256), `connload hold` opening COUNT connections to 198.19.0.20:7000
# (each verified with a one-byte echo). Needs root, `cargo build --release -p netstack-bench`
# (for connload) and an open-file limit above COUNT.
set -euo pipefail
# shellcheck source=start_forwarder.sh
. "$(dirname "$0")/start_forwarder.sh"
binary=$(realpath "${1:?usage: $0 BINARY COUNT [forwarder options]}")
count=${2:?usage: $0 BINARY COUNT [forwarder options]}
shift 2
connload=$(realpath "$(dirname "$0")/../../target/release/connload")
out=$(mktemp -d)
on_cleanup() { rm -rf "$out"; }
open_netns nsidlepte
start_echo_server "$connload" /dev/null
start_forwarder "$ns" "$out" "$binary" 1500 --max-connections $((count + 256)) "$@" || exit 1
fwd=$FORWARDER_PID
sleep 0.3
ip netns exec "$ns" "$connload" hold --target 198.19.0.20:7000 --count "$count" --seconds 60 \
    >"$out/hold.out" 2>&1 &
pids+=($!)
for _ in $(seq 1200); do
    grep -q "^held" "$out/hold.out" 2>/dev/null && break
    sleep 0.1
done
cat "$out/hold.out"
for t in 1 2 3 4 5 6 7 8; do
    sleep 1
    echo "t=${t}s $(grep -E 'VmRSS|VmPTE' /proc/"$fwd"/status | tr -s ' \t\n' ' ')"
done
