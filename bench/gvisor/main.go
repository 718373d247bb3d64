// Command fwd_gvisor is a benchmark subject of `cargo xtask bench`: tun_forward's job on
// gVisor's netstack.
//
//	fwd_gvisor --tun NAME [--mtu N] [--redirect IP]
//
// It creates TUN device NAME (MTU N, transmit queue 8192 packets, up: the same device set-up
// as the Rust subjects), runs gVisor's netstack on it with xjasonlyu/tun2socks's settings
// (fdbased link endpoint on the TUN descriptor in readv mode, promiscuous + spoofing NIC,
// default routes, TTL 64, SACK, RACK, reno, no receive-buffer moderation, Nagle off, 1 MiB
// default TCP buffers, a TCP forwarder with 2,048 in-flight handshakes and a UDP forwarder)
// and relays every TCP connection and UDP flow to its original destination, or with
// --redirect to IP:<original port>:
//
//   - TCP: dial the target (TCP_NODELAY, Go's default), then copy both ways with 256 KiB
//     buffers, half-closing each side at EOF (the glue of the Rust peers,
//     copy_bidirectional_with_sizes with 256 KiB per direction);
//   - UDP: one kernel socket per flow (gVisor's forwarder gives one endpoint per 4-tuple),
//     connected to the target, datagrams copied each way, closed after 60 s idle, at most
//     1,024 flows (tun_forward's defaults).
//
// Prints "ready" once the stack runs; on SIGINT or SIGTERM prints the stack's and the
// relay's counters on stderr and exits.
//
// Built by `cargo xtask bench` in GOPATH mode (GO111MODULE=off) against Debian's
// golang-gvisor-gvisor-dev (gVisor as of 2022-12-19) and Go 1.19.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/fdbased"
	"gvisor.dev/gvisor/pkg/tcpip/link/tun"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

const (
	// relayBuffer is the copy buffer of each TCP relay direction (the Rust subjects' 256 KiB).
	relayBuffer = 256 << 10
	// maxInFlight is tun2socks's limit of TCP handshakes in flight (maxConnAttempts).
	maxInFlight = 2 << 10
	// txQueueLen is the TUN transmit queue of every subject (netstack_examples::tun).
	txQueueLen = 8192
	// udpIdleTimeout closes a UDP flow after this long without traffic (tun_forward's default).
	udpIdleTimeout = 60 * time.Second
	// maxUDPFlows caps the concurrent UDP flows (tun_forward's default).
	maxUDPFlows = 1024
	// maxDatagram is the largest datagram a UDP flow reads.
	maxDatagram = 65536
)

// counters are the relay's own counters, printed at exit.
type counters struct {
	tcpAccepted   atomic.Uint64
	tcpDialFailed atomic.Uint64
	udpFlows      atomic.Uint64
	udpActive     atomic.Int64
	udpDropped    atomic.Uint64
}

var stats counters

func main() {
	name := flag.String("tun", "", "name of the TUN device to create")
	mtu := flag.Uint("mtu", 1500, "MTU of the device and the stack (1280..65535)")
	redirect := flag.String("redirect", "", "relay every flow to this IP, keeping the original port")
	flag.Parse()
	if *name == "" || *mtu < 1280 || *mtu > 65535 {
		fmt.Fprintln(os.Stderr, "usage: fwd_gvisor --tun NAME [--mtu 1280..65535] [--redirect IP]")
		os.Exit(2)
	}
	var redirectIP net.IP
	if *redirect != "" {
		if redirectIP = net.ParseIP(*redirect); redirectIP == nil {
			fmt.Fprintf(os.Stderr, "fwd_gvisor: --redirect %q is not an IP address\n", *redirect)
			os.Exit(2)
		}
	}
	s, err := run(*name, uint32(*mtu), redirectIP)
	if err != nil {
		fmt.Fprintf(os.Stderr, "fwd_gvisor: %v\n", err)
		os.Exit(1)
	}
	fmt.Println("ready")

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	<-signals
	printCounters(s)
}

// run creates the device and the stack and installs the forwarders.
func run(name string, mtu uint32, redirect net.IP) (*stack.Stack, error) {
	fd, err := tun.Open(name)
	if err != nil {
		return nil, fmt.Errorf("opening TUN %s: %w", name, err)
	}
	if err := configureInterface(name, mtu); err != nil {
		return nil, err
	}
	link, err := fdbased.New(&fdbased.Options{
		FDs:            []int{fd},
		MTU:            mtu,
		EthernetHeader: false,
		// tun2socks: readv for a TUN descriptor, and no sendmmsg (not a socket).
		PacketDispatchMode:    fdbased.Readv,
		MaxSyscallHeaderBytes: 0,
	})
	if err != nil {
		return nil, fmt.Errorf("fdbased endpoint: %w", err)
	}

	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
	})
	if err := tun2socksOptions(s); err != nil {
		return nil, err
	}

	target := func(id stack.TransportEndpointID) string {
		ip := net.IP(id.LocalAddress)
		if redirect != nil {
			ip = redirect
		}
		return net.JoinHostPort(ip.String(), fmt.Sprint(id.LocalPort))
	}
	// Handlers before the NIC, so no packet reaches the stack without them (tun2socks).
	tcpForwarder := tcp.NewForwarder(s, 0, maxInFlight, func(r *tcp.ForwarderRequest) {
		// The request's ID is gone once it is completed: take the target first.
		to := target(r.ID())
		var wq waiter.Queue
		ep, terr := r.CreateEndpoint(&wq)
		if terr != nil {
			// RST: no half-open connection is left behind (tun2socks).
			r.Complete(true)
			return
		}
		r.Complete(false)
		setKeepalive(ep)
		stats.tcpAccepted.Add(1)
		go relayTCP(gonet.NewTCPConn(&wq, ep), to)
	})
	s.SetTransportProtocolHandler(tcp.ProtocolNumber, tcpForwarder.HandlePacket)
	udpForwarder := udp.NewForwarder(s, func(r *udp.ForwarderRequest) {
		if stats.udpActive.Load() >= maxUDPFlows {
			stats.udpDropped.Add(1)
			return
		}
		to := target(r.ID())
		var wq waiter.Queue
		ep, terr := r.CreateEndpoint(&wq)
		if terr != nil {
			stats.udpDropped.Add(1)
			return
		}
		stats.udpFlows.Add(1)
		stats.udpActive.Add(1)
		go relayUDP(gonet.NewUDPConn(s, &wq, ep), to)
	})
	s.SetTransportProtocolHandler(udp.ProtocolNumber, udpForwarder.HandlePacket)

	const nic tcpip.NICID = 1
	if terr := s.CreateNICWithOptions(nic, link, stack.NICOptions{}); terr != nil {
		return nil, fmt.Errorf("creating NIC: %s", terr)
	}
	// Accept packets to any address and answer from any address (tun2socks).
	if terr := s.SetPromiscuousMode(nic, true); terr != nil {
		return nil, fmt.Errorf("promiscuous mode: %s", terr)
	}
	if terr := s.SetSpoofing(nic, true); terr != nil {
		return nil, fmt.Errorf("spoofing: %s", terr)
	}
	s.SetRouteTable([]tcpip.Route{
		{Destination: header.IPv4EmptySubnet, NIC: nic},
		{Destination: header.IPv6EmptySubnet, NIC: nic},
	})
	return s, nil
}

// tun2socksOptions applies xjasonlyu/tun2socks's core/option.WithDefault settings.
func tun2socksOptions(s *stack.Stack) error {
	ttl := tcpip.DefaultTTLOption(64)
	sack := tcpip.TCPSACKEnabled(true)
	recovery := tcpip.TCPRACKLossDetection
	cc := tcpip.CongestionControlOption("reno")
	delay := tcpip.TCPDelayEnabled(false)
	moderate := tcpip.TCPModerateReceiveBufferOption(false)
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: tcp.MinBufferSize, Default: tcp.DefaultSendBufferSize, Max: tcp.MaxBufferSize}
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: tcp.MinBufferSize, Default: tcp.DefaultReceiveBufferSize, Max: tcp.MaxBufferSize}
	for _, step := range []struct {
		what string
		err  tcpip.Error
	}{
		{"ipv4 TTL", s.SetNetworkProtocolOption(ipv4.ProtocolNumber, &ttl)},
		{"ipv6 TTL", s.SetNetworkProtocolOption(ipv6.ProtocolNumber, &ttl)},
		{"ipv4 forwarding", s.SetForwardingDefaultAndAllNICs(ipv4.ProtocolNumber, true)},
		{"ipv6 forwarding", s.SetForwardingDefaultAndAllNICs(ipv6.ProtocolNumber, true)},
		{"TCP send buffer", s.SetTransportProtocolOption(tcp.ProtocolNumber, &snd)},
		{"TCP receive buffer", s.SetTransportProtocolOption(tcp.ProtocolNumber, &rcv)},
		{"TCP congestion control", s.SetTransportProtocolOption(tcp.ProtocolNumber, &cc)},
		{"TCP delay", s.SetTransportProtocolOption(tcp.ProtocolNumber, &delay)},
		{"TCP moderate receive buffer", s.SetTransportProtocolOption(tcp.ProtocolNumber, &moderate)},
		{"TCP SACK", s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack)},
		{"TCP recovery", s.SetTransportProtocolOption(tcp.ProtocolNumber, &recovery)},
	} {
		if step.err != nil {
			return fmt.Errorf("setting %s: %s", step.what, step.err)
		}
	}
	s.SetICMPBurst(50)
	s.SetICMPLimit(1000)
	return nil
}

// setKeepalive applies tun2socks's keep-alive settings to an accepted endpoint.
func setKeepalive(ep tcpip.Endpoint) {
	ep.SocketOptions().SetKeepAlive(true)
	idle := tcpip.KeepaliveIdleOption(60 * time.Second)
	interval := tcpip.KeepaliveIntervalOption(30 * time.Second)
	_ = ep.SetSockOpt(&idle)
	_ = ep.SetSockOpt(&interval)
	_ = ep.SetSockOptInt(tcpip.KeepaliveCountOption, 9)
}

// halfCloser is a connection whose write side can be shut down alone.
type halfCloser interface {
	io.ReadWriteCloser
	CloseWrite() error
}

// relayTCP dials target and copies bytes both ways until both directions ended.
func relayTCP(inbound *gonet.TCPConn, target string) {
	defer inbound.Close()
	outbound, err := net.Dial("tcp", target)
	if err != nil {
		stats.tcpDialFailed.Add(1)
		return
	}
	defer outbound.Close()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); copyHalf(outbound.(*net.TCPConn), inbound) }()
	go func() { defer wg.Done(); copyHalf(inbound, outbound.(*net.TCPConn)) }()
	wg.Wait()
}

// copyHalf copies src to dst through one 256 KiB buffer (no ReadFrom/WriteTo shortcuts, so
// every subject copies in the same chunks), then shuts down dst's write side.
func copyHalf(dst halfCloser, src io.Reader) {
	buf := make([]byte, relayBuffer)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	_ = dst.CloseWrite()
}

// relayUDP relays one flow: datagrams from the stack go to target over a connected kernel
// socket, replies go back through the stack. Ends after udpIdleTimeout without traffic.
func relayUDP(inbound *gonet.UDPConn, target string) {
	defer stats.udpActive.Add(-1)
	defer inbound.Close()
	outbound, err := net.Dial("udp", target)
	if err != nil {
		return
	}
	defer outbound.Close()
	var last atomic.Int64
	touch := func() { last.Store(time.Now().UnixNano()) }
	touch()
	done := make(chan struct{}, 2)
	pump := func(dst io.Writer, src interface {
		io.Reader
		SetReadDeadline(time.Time) error
	}) {
		defer func() { done <- struct{}{} }()
		buf := make([]byte, maxDatagram)
		for {
			_ = src.SetReadDeadline(time.Now().Add(udpIdleTimeout))
			n, err := src.Read(buf)
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() &&
					time.Since(time.Unix(0, last.Load())) < udpIdleTimeout {
					continue // the other direction kept the flow alive
				}
				if ne, ok := err.(net.Error); ok && !ne.Timeout() && isRefused(err) {
					continue // an ICMP error for an earlier datagram: the flow stays
				}
				return
			}
			touch()
			// A refused or failed send is a lost datagram, as on a real network.
			_, _ = dst.Write(buf[:n])
		}
	}
	go pump(outbound, inbound)
	go pump(inbound, outbound.(*net.UDPConn))
	<-done
	// Unblock the other direction.
	_ = inbound.SetReadDeadline(time.Now())
	_ = outbound.SetReadDeadline(time.Now())
	<-done
}

// isRefused reports whether err is ECONNREFUSED (a port-unreachable reply on a connected
// UDP socket).
func isRefused(err error) bool {
	var errno syscall.Errno
	for e := err; e != nil; {
		if en, ok := e.(syscall.Errno); ok {
			errno = en
			break
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			break
		}
		e = u.Unwrap()
	}
	return errno == syscall.ECONNREFUSED
}

// configureInterface sets the MTU and transmit queue length of interface name and brings it
// up, as netstack_examples::tun does for the Rust subjects.
func configureInterface(name string, mtu uint32) error {
	sock, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(sock)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("interface name %q: %w", name, err)
	}
	ifr.SetUint32(mtu)
	if err := unix.IoctlIfreq(sock, unix.SIOCSIFMTU, ifr); err != nil {
		return fmt.Errorf("SIOCSIFMTU %s: %w", name, err)
	}
	ifr.SetUint32(txQueueLen)
	if err := unix.IoctlIfreq(sock, unix.SIOCSIFTXQLEN, ifr); err != nil {
		return fmt.Errorf("SIOCSIFTXQLEN %s: %w", name, err)
	}
	if err := unix.IoctlIfreq(sock, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCGIFFLAGS %s: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(sock, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCSIFFLAGS %s: %w", name, err)
	}
	return nil
}

// printCounters writes the stack's and the relay's counters to stderr.
func printCounters(s *stack.Stack) {
	st := s.Stats()
	fmt.Fprintf(os.Stderr,
		"gvisor: nic rx %d tx %d tx-dropped-no-buffer %d | ip received %d delivered %d malformed %d | "+
			"udp received %d sent %d rcvbuf-errors %d unknown-port %d malformed %d send-errors %d | "+
			"tcp segments in %d out %d retransmits %d failed-connection-attempts %d\n",
		st.NICs.Rx.Packets.Value(), st.NICs.Tx.Packets.Value(), st.NICs.TxPacketsDroppedNoBufferSpace.Value(),
		st.IP.PacketsReceived.Value(), st.IP.PacketsDelivered.Value(), st.IP.MalformedPacketsReceived.Value(),
		st.UDP.PacketsReceived.Value(), st.UDP.PacketsSent.Value(),
		st.UDP.ReceiveBufferErrors.Value(), st.UDP.UnknownPortErrors.Value(),
		st.UDP.MalformedPacketsReceived.Value(), st.UDP.PacketSendErrors.Value(),
		st.TCP.ValidSegmentsReceived.Value(), st.TCP.SegmentsSent.Value(),
		st.TCP.Retransmits.Value(), st.TCP.FailedConnectionAttempts.Value(),
	)
	fmt.Fprintf(os.Stderr,
		"relay: tcp accepted %d dial-failed %d | udp flows %d dropped %d\n",
		stats.tcpAccepted.Load(), stats.tcpDialFailed.Load(),
		stats.udpFlows.Load(), stats.udpDropped.Load())
}
