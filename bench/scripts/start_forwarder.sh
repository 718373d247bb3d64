# Sourced by the profiling scripts beside it (not run on its own): starts a TUN forwarder in a
# network namespace the caller created, the way `cargo xtask bench` does.
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
