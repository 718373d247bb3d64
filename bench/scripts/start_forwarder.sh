# Sourced by the profiling scripts beside it (not run on its own): the namespace they run in,
# the echo server of the connection tests, and a TUN forwarder, the way `cargo xtask bench`
# sets them up.
#
#   open_netns PREFIX
#
# Creates the network namespace PREFIX-$$ (its name in `ns`) with loopback up, empties the
# `pids` array, and traps EXIT to kill every PID in `pids`, delete the namespace and then run
# the caller's `on_cleanup` function, if it defined one.
open_netns() {
    ns=$1-$$
    pids=()
    trap close_netns EXIT
    ip netns add "$ns"
    ip -n "$ns" link set lo up
}

# The EXIT trap of `open_netns`.
close_netns() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    if declare -F on_cleanup >/dev/null; then on_cleanup; fi
}

#   start_echo_server CONNLOAD LOG
#
# The bench's sysctls for connection tests in `ns` (TIME-WAIT ports reused by the relay's
# upstream side, ports 1024-65000), and `CONNLOAD serve` on 127.0.0.1:7000 there (output in
# LOG, PID appended to `pids`).
start_echo_server() {
    ip netns exec "$ns" sysctl -q -w net.ipv4.tcp_tw_reuse=1
    ip netns exec "$ns" sysctl -q -w "net.ipv4.ip_local_port_range=1024 65000"
    ip netns exec "$ns" "$1" serve --listen 127.0.0.1:7000 >"$2" 2>&1 &
    pids+=($!)
    sleep 0.3
}

#
#   start_forwarder NS OUTDIR BINARY MTU [forwarder options]
#
# Runs `BINARY --tun tun0 --mtu MTU --redirect 127.0.0.1 [options]` in NS with its stdout and
# stderr in OUTDIR/forwarder.stdout and OUTDIR/forwarder.stderr, appends its PID to the
# caller's `pids` array (for the caller's cleanup) and sets FORWARDER_PID, waits for `ready`
# (10 s at most), then gives the kernel side of tun0 198.18.0.1/15 and brings it up. Returns 1
# if the forwarder never printed `ready`.
start_forwarder() {
    local ns=$1 out=$2 binary=$3 mtu=$4
    shift 4
    ip netns exec "$ns" "$binary" --tun tun0 --mtu "$mtu" --redirect 127.0.0.1 "$@" \
        >"$out/forwarder.stdout" 2>"$out/forwarder.stderr" &
    FORWARDER_PID=$!
    pids+=("$FORWARDER_PID")
    for _ in $(seq 100); do
        grep -qx ready "$out/forwarder.stdout" 2>/dev/null && break
        sleep 0.1
    done
    grep -qx ready "$out/forwarder.stdout" || {
        echo "forwarder did not print ready" >&2
        return 1
    }
    ip -n "$ns" addr add 198.18.0.1/15 dev tun0
    ip -n "$ns" link set tun0 up
}
