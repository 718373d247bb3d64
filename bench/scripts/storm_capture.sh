#!/usr/bin/env bash
# One reconnect storm through a TUN forwarder, as `cargo xtask bench`'s storm test (256 flows,
# 64 KiB echoed each, 10 s, the same sysctls), with every SYN and RST captured on tun0 and on
# the loopback leg to the echo server: for tracing a client whose `connect` timed out.
#
#   bench/scripts/storm_capture.sh BINARY OUTDIR [forwarder options]
#   bench/scripts/storm_capture.sh target/release/tun_forward /tmp/storm
#
# OUTDIR gets storm.log (connload's counts and first error), tun.pcap and lo.pcap (SYN/RST
# only), nstat.txt (the namespace's TCP counters) and the forwarder's stdout/stderr (its
# counters at exit). Everything runs in a network namespace this script creates and deletes
# (also on error): `connload serve` on 127.0.0.1:7000, the forwarder on tun0 (--redirect
# 127.0.0.1), `connload storm` to 198.19.0.0/16. Needs root, tcpdump, nstat (iproute2) and
# `cargo build --release -p netstack-bench` (for connload).
set -euo pipefail
# shellcheck source=start_forwarder.sh
. "$(dirname "$0")/start_forwarder.sh"
binary=$(realpath "${1:?usage: $0 BINARY OUTDIR [forwarder options]}")
out=${2:?usage: $0 BINARY OUTDIR [forwarder options]}
shift 2
connload=$(realpath "$(dirname "$0")/../../target/release/connload")
mkdir -p "$out"
open_netns nsstorm
start_echo_server "$connload" "$out/serve.log"
start_forwarder "$ns" "$out" "$binary" 1500 "$@" || exit 1
ip netns exec "$ns" tcpdump -i tun0 -nn -s 96 -w "$out/tun.pcap" \
    'tcp[tcpflags] & (tcp-syn|tcp-rst) != 0' >"$out/tcpdump-tun.log" 2>&1 &
pids+=($!)
ip netns exec "$ns" tcpdump -i lo -nn -s 96 -w "$out/lo.pcap" \
    'tcp port 7000 and tcp[tcpflags] & (tcp-syn|tcp-rst) != 0' >"$out/tcpdump-lo.log" 2>&1 &
pids+=($!)
sleep 1
ip netns exec "$ns" "$connload" storm --base 198.19.0.0 --port 7000 --seconds 10 \
    --flows 256 --bytes 65536 >"$out/storm.log" 2>&1
ip netns exec "$ns" nstat -az >"$out/nstat.txt" 2>&1 || true
sleep 1
# SIGINT: the forwarder prints its counters on the way out.
kill -INT "$FORWARDER_PID" 2>/dev/null || true
sleep 0.5
cat "$out/storm.log"
