#!/usr/bin/env bash
# One TCP cell (iperf3, 5 s) through a TUN forwarder, optionally with `perf record -a -g` of the
# whole machine during seconds 1-4: how the two cores are shared between the client, the
# forwarder and the server, and how much of them sits idle (`swapper`).
#
#   bench/scripts/tcp_one_cell.sh BINARY MTU OUTDIR [iperf3 client options: -R, -P 8, ...]
#
#   FWD_ARGS="--tcp-buffer 1048576" bench/scripts/tcp_one_cell.sh target/release/tun_forward 1500 /tmp/t
#   PERF=0 bench/scripts/tcp_one_cell.sh target/release/tun_forward 1500 /tmp/t -R   # no profile
#
# FWD_ARGS: more options for the forwarder. PERF=0: no profile. With the profile, OUTDIR gets
# perf.data, report.txt (by command, object and symbol) and comm.txt (by command).
#
# Everything runs in a network namespace this script creates and deletes (also on error):
# iperf3's server on 127.0.0.1 there, the forwarder on tun0 (--redirect 127.0.0.1), the client
# connecting to 198.19.0.10. Needs root, iperf3 and (for the profile) perf.
set -euo pipefail
# shellcheck source=start_forwarder.sh
. "$(dirname "$0")/start_forwarder.sh"
binary=$(realpath "${1:?usage: $0 BINARY MTU OUTDIR [iperf3 options]}")
mtu=${2:?usage: $0 BINARY MTU OUTDIR [iperf3 options]}
out=${3:?usage: $0 BINARY MTU OUTDIR [iperf3 options]}
shift 3
mkdir -p "$out"
open_netns nstcpcell
ip netns exec "$ns" iperf3 -s -B 127.0.0.1 -p 5201 >/dev/null 2>&1 &
pids+=($!)
# shellcheck disable=SC2086 # FWD_ARGS is a list of options
start_forwarder "$ns" "$out" "$binary" "$mtu" ${FWD_ARGS:-} || exit 1
sleep 0.3
perf_pid=
if [ "${PERF:-1}" = 1 ]; then
    (sleep 1; perf record -a -g -o "$out/perf.data" -- sleep 3 2>"$out/perf.log") &
    perf_pid=$!
    pids+=("$perf_pid")
fi
ip netns exec "$ns" iperf3 -c 198.19.0.10 -p 5201 -t 5 "$@" | tail -4
if [ -n "$perf_pid" ]; then
    wait "$perf_pid" || true
    perf report -i "$out/perf.data" --no-children --percent-limit 0.7 --stdio \
        --sort comm,dso,symbol -g none >"$out/report.txt" 2>/dev/null || true
    perf report -i "$out/perf.data" --no-children --stdio --sort comm -g none \
        >"$out/comm.txt" 2>/dev/null || true
fi
