#!/bin/bash
# One unlimited-rate UDP cell (iperf3 -u -b 0 -l 1400, 6 s) through a TUN forwarder, with the
# forwarder's per-thread CPU and its exit counters: where datagrams were dropped.
#
#   bench/scripts/udp_one_cell.sh target/release/tun_forward          # upload
#   IPERF_EXTRA=-R bench/scripts/udp_one_cell.sh target/release/tun_forward   # download
#
# Everything runs inside a network namespace this script creates and deletes: iperf3's
# server on 127.0.0.1 there, the forwarder on tun0 (--redirect 127.0.0.1), the client sending
# to 198.19.0.10. Run as root.
set -eu
BIN=$1; shift
NS=nsudpcell$$
ip netns add $NS
trap 'ip netns del $NS 2>/dev/null || true' EXIT
ip netns exec $NS ip link set lo up
ip netns exec $NS iperf3 -s -B 127.0.0.1 -p 5201 -D --pidfile /tmp/ip$NS.pid
ip netns exec $NS "$BIN" --tun tun0 --mtu 1500 --redirect 127.0.0.1 "$@" > /tmp/fwd$NS.log 2>&1 &
FPID=$!
for _ in $(seq 50); do grep -q ready /tmp/fwd$NS.log && break; sleep 0.1; done
ip netns exec $NS ip addr add 198.18.0.1/15 dev tun0
ip netns exec $NS ip link set tun0 up
sleep 0.3
SPID=$(cat /tmp/ip$NS.pid)
snap() { for t in /proc/$FPID/task/* /proc/$SPID/task/*; do echo "$(basename $t) $(cat $t/comm) $(awk '{print $14+$15}' $t/stat)"; done; }
ip netns exec $NS iperf3 -c 198.19.0.10 -p 5201 -u -b 0 -l 1400 -t 6 ${IPERF_EXTRA:-} > /tmp/cli$NS.log &
CL=$!
sleep 1; snap > /tmp/s0$NS; sleep 4; snap > /tmp/s1$NS
wait $CL; grep receiver /tmp/cli$NS.log
join /tmp/s0$NS /tmp/s1$NS | awk '{d=$5-$3; if (d>0) print "thread", $1, $2, d, "ticks in 4 s"}'
sleep 1; kill $FPID; kill $SPID; sleep 0.3
grep -E "drops|udp|tun " /tmp/fwd$NS.log
rm -f /tmp/fwd$NS.log /tmp/cli$NS.log /tmp/s0$NS /tmp/s1$NS /tmp/ip$NS.pid
