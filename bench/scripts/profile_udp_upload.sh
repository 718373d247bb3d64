#!/usr/bin/env bash
# Profiles one TUN forwarder during a UDP upload: iperf3 -u -b 0 -l 1400 (unlimited rate,
# 1,400-byte datagrams) from the kernel through the forwarder's TUN device (MTU 1500) to an
# iperf3 server on 127.0.0.1:5201, as in `cargo xtask bench`.
#
#   bench/scripts/profile_udp_upload.sh stat   BINARY [SECONDS] [OUTDIR]
#   bench/scripts/profile_udp_upload.sh record BINARY [SECONDS] [OUTDIR]
#
# RATE=400M in the environment paces the client (iperf3 -b RATE) instead of -b 0; MTU=65000
# sets the device's MTU (default 1500).
#
# BINARY has tun_forward's command line (--tun NAME --mtu N --redirect IP, prints `ready`):
# target/release/tun_forward, target/release/fwd_netstack_smoltcp, ...
#
# stat:   counts the forwarder's system calls (perf stat on syscall tracepoints), and writes the
#         namespace's /proc/net/snmp and `ip -s link show tun0` before and after, the iperf3
#         JSON, `ss -uamn` during the run, and the forwarder's own counters (printed on
#         SIGINT) to OUTDIR.
# record: perf record -g of the forwarder during the run (OUTDIR/perf.data), then
#         `perf report --no-children` of it (OUTDIR/report.txt).
#
# Everything runs in a network namespace this script creates and deletes (also on error and
# Ctrl-C); traffic goes only to 198.18.0.0/15 and loopback inside it. Needs root, iperf3, perf.
set -euo pipefail
# shellcheck source=start_forwarder.sh
. "$(dirname "$0")/start_forwarder.sh"

mode=${1:?usage: $0 stat|record BINARY [SECONDS] [OUTDIR]}
binary=$(realpath "${2:?usage: $0 stat|record BINARY [SECONDS] [OUTDIR]}")
seconds=${3:-5}
rate=${RATE:-0}
mtu=${MTU:-1500}
out=${4:-target/profile/$(basename "$binary")-$mode}
mkdir -p "$out"
out=$(realpath "$out")

ns=nsprof-$$
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$ns"
ip -n "$ns" link set lo up
in_ns() { ip netns exec "$ns" "$@"; }

# Started with `ip netns exec` itself (not the in_ns function), so that $! is the program.
ip netns exec "$ns" iperf3 -s -B 127.0.0.1 -p 5201 >"$out/iperf3-server.log" 2>&1 &
pids+=($!)
start_forwarder "$ns" "$out" "$binary" "$mtu" || exit 1
forwarder=$FORWARDER_PID
sleep 0.5

# CPU seconds (user + system) of the forwarder, from /proc/PID/stat.
cpu_seconds() {
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); print ($12 + $13) / hz }' \
        /proc/"$forwarder"/stat
}
in_ns cat /proc/net/snmp >"$out/snmp.before"
ip -n "$ns" -s link show tun0 >"$out/link.before"
cpu_before=$(cpu_seconds)
threads=$(ls /proc/"$forwarder"/task | wc -l)
echo "forwarder threads: $threads" >"$out/threads.txt"

case "$mode" in
stat)
    events=raw_syscalls:sys_enter
    for s in read readv write writev recvfrom recvmsg recvmmsg sendto sendmsg sendmmsg \
        epoll_wait epoll_pwait futex sched_yield; do
        events+=",syscalls:sys_enter_$s"
    done
    perf stat -e "$events" -p "$forwarder" -o "$out/syscalls.txt" -- sleep "$seconds" &
    pids+=($!)
    perf_pid=$!
    (sleep $((seconds / 2)); in_ns ss -uamn >"$out/ss-during.txt") &
    pids+=($!)
    ;;
record)
    perf record -g -o "$out/perf.data" -p "$forwarder" -- sleep "$seconds" \
        2>"$out/perf-record.log" &
    pids+=($!)
    perf_pid=$!
    ;;
*)
    echo "mode must be stat or record" >&2
    exit 2
    ;;
esac
in_ns iperf3 -c 198.19.0.10 -p 5201 -u -b "$rate" -l 1400 -t "$seconds" -J >"$out/iperf3.json"
wait "$perf_pid" || true
cpu_after=$(cpu_seconds)
grep VmHWM /proc/"$forwarder"/status >"$out/peak-rss.txt"
awk -v a="$cpu_after" -v b="$cpu_before" 'BEGIN { printf "forwarder CPU during the run: %.2f s\n", a - b }' >"$out/cpu.txt"

in_ns cat /proc/net/snmp >"$out/snmp.after"
ip -n "$ns" -s link show tun0 >"$out/link.after"
kill -INT "$forwarder"
wait "$forwarder" || true

if [ "$mode" = record ]; then
    perf report -i "$out/perf.data" --no-children --percent-limit 0.5 --stdio \
        --sort dso,symbol >"$out/report.txt" 2>/dev/null || true
    perf report -i "$out/perf.data" --no-children --stdio --sort pid \
        >"$out/report-threads.txt" 2>/dev/null || true
fi
python3 - "$out" <<'EOF'
import json, sys
out = sys.argv[1]
def snmp(path):
    rows = {}
    lines = open(path).read().splitlines()
    for head, vals in zip(lines[::2], lines[1::2]):
        proto = head.split(':')[0]
        rows[proto] = dict(zip(head.split()[1:], map(int, vals.split()[1:])))
    return rows
before, after = snmp(f"{out}/snmp.before"), snmp(f"{out}/snmp.after")
udp = {k: after['Udp'][k] - before['Udp'][k] for k in after['Udp']}
end = json.load(open(f"{out}/iperf3.json"))['end']
sent, recv = end['sum_sent'], end['sum_received']
print(f"iperf3: sent {sent['packets']} datagrams ({sent['bits_per_second']/1e9:.2f} Gbit/s), "
      f"received {recv['packets'] - recv['lost_packets']} ({recv['bits_per_second']/1e9:.2f} Gbit/s), "
      f"lost {recv['lost_percent']:.1f} %")
print("namespace Udp counters (after - before):",
      ", ".join(f"{k} {v}" for k, v in udp.items() if v))
EOF
for f in link.before link.after; do
    echo "== $f"
    cat "$out/$f"
done
echo "== forwarder counters"
cat "$out/forwarder.stderr"
cat "$out/cpu.txt" "$out/peak-rss.txt"
