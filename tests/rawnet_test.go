package tests

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// inNetns runs f on a fresh OS thread switched into the named namespace. Sockets
// that f creates stay in that namespace after it returns, so they can then be used
// from any goroutine. The thread is never handed back to the runtime: it ends with
// its goroutine, so no other code runs in the wrong namespace.
func inNetns(name string, f func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		ns, err := netns.GetFromName(name)
		if err != nil {
			done <- fmt.Errorf("open netns %s: %w", name, err)
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			done <- fmt.Errorf("enter netns %s: %w", name, err)
			return
		}
		done <- f()
	}()
	return <-done
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// rawSock is an AF_PACKET socket bound to one interface of one namespace: what a
// hostile guest (or a capture on a host NIC) sees and sends, frame by frame.
type rawSock struct {
	f   *os.File
	rc  syscall.RawConn
	dev string
}

func openRaw(ns, dev string) (*rawSock, error) {
	var fd int
	err := inNetns(ns, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind packet socket to %s: %w", dev, err)
		}
		// Captures must not drop frames under load: the verdict is a count.
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("raw socket on %s in %s: %w", dev, ns, err)
	}
	f := os.NewFile(uintptr(fd), ns+"/"+dev)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &rawSock{f: f, rc: rc, dev: dev}, nil
}

// send writes whole Ethernet frames on the socket's interface.
func (s *rawSock) send(frames ...[]byte) error {
	for _, fr := range frames {
		if _, err := s.f.Write(fr); err != nil {
			return fmt.Errorf("send on %s: %w", s.dev, err)
		}
	}
	return nil
}

// recv reads one frame and tells whether the kernel sent it (PACKET_OUTGOING).
func (s *rawSock) recv(buf []byte) (int, bool, error) {
	var n int
	var from unix.Sockaddr
	var rerr error
	err := s.rc.Read(func(fd uintptr) bool {
		n, from, rerr = unix.Recvfrom(int(fd), buf, 0)
		return !errors.Is(rerr, unix.EAGAIN)
	})
	if err != nil {
		return 0, false, err
	}
	if rerr != nil {
		return 0, false, rerr
	}
	ll, _ := from.(*unix.SockaddrLinklayer)
	return n, ll != nil && ll.Pkttype == unix.PACKET_OUTGOING, nil
}

// sniffer records every frame an interface receives (and, for host NICs, sends)
// from its start to the end of the test. Checks count frames after a mark, so one
// capture per interface serves every attack.
type sniffer struct {
	name     string
	sock     *rawSock
	outgoing bool // keep frames the interface sends too

	mu     sync.Mutex
	frames [][]byte
	done   chan struct{}
}

func startSniffer(name, ns, dev string, outgoing bool) (*sniffer, error) {
	s, err := openRaw(ns, dev)
	if err != nil {
		return nil, err
	}
	sn := &sniffer{name: name, sock: s, outgoing: outgoing, done: make(chan struct{})}
	go sn.loop()
	return sn, nil
}

func (s *sniffer) loop() {
	defer close(s.done)
	buf := make([]byte, 65536)
	for {
		n, out, err := s.sock.recv(buf)
		if err != nil {
			return // closed
		}
		if out && !s.outgoing {
			continue
		}
		s.mu.Lock()
		s.frames = append(s.frames, append([]byte(nil), buf[:n]...))
		s.mu.Unlock()
	}
}

func (s *sniffer) close() {
	s.sock.f.Close()
	<-s.done
}

// mark is a position in the capture.
func (s *sniffer) mark() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.frames)
}

// count is the number of frames since mark that match.
func (s *sniffer) count(since int, match func(gopacket.Packet, []byte) bool) int {
	s.mu.Lock()
	frames := s.frames[since:]
	s.mu.Unlock()
	n := 0
	for _, fr := range frames {
		if match(gopacket.NewPacket(fr, layers.LayerTypeEthernet, gopacket.Default), fr) {
			n++
		}
	}
	return n
}

// hasToken matches frames that carry tok anywhere (inner frames of VXLAN included).
func hasToken(tok string) func(gopacket.Packet, []byte) bool {
	b := []byte(tok)
	return func(_ gopacket.Packet, raw []byte) bool { return bytes.Contains(raw, b) }
}

// tag is one VLAN header: TPID 0x8100 (802.1Q) or 0x88a8 (802.1ad).
type tag struct {
	tpid     layers.EthernetType
	vid      uint16
	priority uint8
}

var (
	dot1q = layers.EthernetTypeDot1Q
	qinq  = layers.EthernetTypeQinQ
)

// frame serializes an Ethernet frame with the given VLAN headers around ls, lengths
// and checksums filled in.
func frame(src, dst net.HardwareAddr, tags []tag, next layers.EthernetType, ls ...gopacket.SerializableLayer) []byte {
	eth := &layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: next}
	all := []gopacket.SerializableLayer{eth}
	if len(tags) > 0 {
		eth.EthernetType = tags[0].tpid
		for i, tg := range tags {
			typ := next
			if i+1 < len(tags) {
				typ = tags[i+1].tpid
			}
			all = append(all, &layers.Dot1Q{VLANIdentifier: tg.vid, Priority: tg.priority, Type: typ})
		}
	}
	all = append(all, ls...)
	for _, l := range ls {
		switch tl := l.(type) {
		case *layers.UDP:
			for _, n := range ls {
				if nl, ok := n.(gopacket.NetworkLayer); ok {
					_ = tl.SetNetworkLayerForChecksum(nl)
				}
			}
		case *layers.TCP:
			for _, n := range ls {
				if nl, ok := n.(gopacket.NetworkLayer); ok {
					_ = tl.SetNetworkLayerForChecksum(nl)
				}
			}
		case *layers.ICMPv6:
			for _, n := range ls {
				if nl, ok := n.(gopacket.NetworkLayer); ok {
					_ = tl.SetNetworkLayerForChecksum(nl)
				}
			}
		}
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, all...); err != nil {
		panic(fmt.Sprintf("serialize frame: %v", err))
	}
	b := buf.Bytes()
	if len(b) < 60 {
		b = append(b, make([]byte, 60-len(b))...)
	}
	return b
}

// udp4 is a UDP/IPv4 frame carrying payload.
func udp4(src, dst net.HardwareAddr, tags []tag, sip, dip netip.Addr, sport, dport uint16, payload []byte) []byte {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: sip.AsSlice(), DstIP: dip.AsSlice()}
	u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	return frame(src, dst, tags, layers.EthernetTypeIPv4, ip, u, gopacket.Payload(payload))
}

// udp6 is a UDP/IPv6 frame carrying payload.
func udp6(src, dst net.HardwareAddr, tags []tag, sip, dip netip.Addr, sport, dport uint16, payload []byte) []byte {
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: sip.AsSlice(), DstIP: dip.AsSlice()}
	u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	return frame(src, dst, tags, layers.EthernetTypeIPv6, ip, u, gopacket.Payload(payload))
}

// arpFrame is an ARP request or reply claiming that spa is at sha.
func arpFrame(src, dst net.HardwareAddr, tags []tag, op uint16, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) []byte {
	a := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: op, SourceHwAddress: sha, SourceProtAddress: spa.AsSlice(), DstHwAddress: tha, DstProtAddress: tpa.AsSlice()}
	return frame(src, dst, tags, layers.EthernetTypeARP, a)
}

// icmp6Frame wraps an ICMPv6 message (hop limit 255, as neighbour discovery needs).
func icmp6Frame(src, dst net.HardwareAddr, tags []tag, sip, dip netip.Addr, typ uint8, body gopacket.SerializableLayer) []byte {
	ip := &layers.IPv6{Version: 6, HopLimit: 255, NextHeader: layers.IPProtocolICMPv6, SrcIP: sip.AsSlice(), DstIP: dip.AsSlice()}
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
	return frame(src, dst, tags, layers.EthernetTypeIPv6, ip, ic, body)
}

// naFrame is an unsolicited, overriding neighbour advertisement: target is at tll.
func naFrame(src, dst net.HardwareAddr, tags []tag, sip, dip, target netip.Addr, tll net.HardwareAddr) []byte {
	na := &layers.ICMPv6NeighborAdvertisement{Flags: 0x20, TargetAddress: target.AsSlice(),
		Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptTargetAddress, Data: tll}}}
	return icmp6Frame(src, dst, tags, sip, dip, layers.ICMPv6TypeNeighborAdvertisement, na)
}

// raFrame is a router advertisement offering prefix/64 for autoconfiguration.
func raFrame(src net.HardwareAddr, tags []tag, sip netip.Addr, prefix netip.Addr) []byte {
	pio := make([]byte, 30)
	pio[0] = 64   // prefix length
	pio[1] = 0xc0 // on-link, autonomous
	for _, off := range []int{2, 6} {
		pio[off], pio[off+1], pio[off+2], pio[off+3] = 0, 0x27, 0x8d, 0 // 2592000 s
	}
	copy(pio[14:], prefix.AsSlice())
	ra := &layers.ICMPv6RouterAdvertisement{HopLimit: 64, RouterLifetime: 1800, Options: layers.ICMPv6Options{
		{Type: layers.ICMPv6OptSourceAddress, Data: src},
		{Type: layers.ICMPv6OptPrefixInfo, Data: pio},
	}}
	return icmp6Frame(src, net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}, tags, sip, netip.MustParseAddr("ff02::1"), layers.ICMPv6TypeRouterAdvertisement, ra)
}

// dhcpOffer is a DHCPv4 offer broadcast from a rogue server, tok in its file field.
func dhcpOffer(src net.HardwareAddr, tags []tag, sip netip.Addr, tok string) []byte {
	d := &layers.DHCPv4{Operation: layers.DHCPOpReply, HardwareType: layers.LinkTypeEthernet, HardwareLen: 6,
		Xid: 0x4c4e5300, YourClientIP: net.IPv4(10, 0, 0, 200), NextServerIP: sip.AsSlice(),
		ClientHWAddr: net.HardwareAddr{2, 0, 0, 0, 0, 1}, File: []byte(tok),
		Options: layers.DHCPOptions{
			layers.NewDHCPOption(layers.DHCPOptMessageType, []byte{byte(layers.DHCPMsgTypeOffer)}),
			layers.NewDHCPOption(layers.DHCPOptServerID, sip.AsSlice()),
			layers.NewDHCPOption(layers.DHCPOptRouter, sip.AsSlice()),
		}}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: sip.AsSlice(), DstIP: net.IPv4bcast}
	u := &layers.UDP{SrcPort: 67, DstPort: 68}
	return frame(src, net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, tags, layers.EthernetTypeIPv4, ip, u, d)
}

// vxlanFrame is a hand-made VXLAN packet from outer sip to dip carrying inner.
func vxlanFrame(src, dst net.HardwareAddr, sip, dip netip.Addr, vni uint32, inner []byte) []byte {
	hdr := []byte{0x08, 0, 0, 0, byte(vni >> 16), byte(vni >> 8), byte(vni), 0}
	return udp4(src, dst, nil, sip, dip, 40000, 4789, append(hdr, inner...))
}

// nsHandle is a netlink handle inside namespace ns.
func nsHandle(ns string) (*netlink.Handle, error) {
	h, err := netns.GetFromName(ns)
	if err != nil {
		return nil, err
	}
	defer h.Close() // the handle keeps its own reference to the namespace
	return netlink.NewHandleAt(h)
}

// neighbours is a namespace's neighbour table: address -> link-layer address.
func neighbours(ns string) (map[netip.Addr]string, error) {
	nh, err := nsHandle(ns)
	if err != nil {
		return nil, err
	}
	defer nh.Close()
	out := map[netip.Addr]string{}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		ns, err := nh.NeighList(0, fam)
		if err != nil {
			return nil, err
		}
		for _, n := range ns {
			if a, ok := netip.AddrFromSlice(n.IP); ok && n.HardwareAddr != nil {
				out[a.Unmap()] = n.HardwareAddr.String()
			}
		}
	}
	return out, nil
}

// addrs lists the addresses of a namespace's eth0.
func addrs(ns string) ([]netip.Prefix, error) {
	nh, err := nsHandle(ns)
	if err != nil {
		return nil, err
	}
	defer nh.Close()
	l, err := nh.LinkByName("eth0")
	if err != nil {
		return nil, err
	}
	as, err := nh.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, a := range as {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			ones, _ := a.Mask.Size()
			out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
		}
	}
	return out, nil
}

// linkMAC is the MAC of a device in a namespace.
func linkMAC(ns, dev string) (net.HardwareAddr, error) {
	nh, err := nsHandle(ns)
	if err != nil {
		return nil, err
	}
	defer nh.Close()
	l, err := nh.LinkByName(dev)
	if err != nil {
		return nil, fmt.Errorf("%s in %s: %w", dev, ns, err)
	}
	return l.Attrs().HardwareAddr, nil
}

// lineServer accepts TCP connections in a namespace and records every line it
// reads on any of them.
type lineServer struct {
	ln   net.Listener
	mu   sync.Mutex
	got  map[string]bool
	done chan struct{}
}

func serveLines(ns string, addr string) (*lineServer, error) {
	var ln net.Listener
	if err := inNetns(ns, func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		return nil, err
	}
	s := &lineServer{ln: ln, got: map[string]bool{}, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.read(c)
		}
	}()
	return s, nil
}

func (s *lineServer) read(c net.Conn) {
	defer c.Close()
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		s.mu.Lock()
		s.got[sc.Text()] = true
		s.mu.Unlock()
	}
}

func (s *lineServer) has(line string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got[line]
}

func (s *lineServer) close() {
	s.ln.Close()
	<-s.done
}

// dialIn opens a TCP connection from inside a namespace.
func dialIn(ns, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := inNetns(ns, func() (err error) {
		c, err = net.DialTimeout("tcp4", addr, timeout)
		return err
	})
	return c, err
}

// udpListener counts datagrams carrying a token that reach a socket in a namespace.
type udpListener struct {
	conn net.PacketConn
	mu   sync.Mutex
	got  [][]byte
	done chan struct{}
}

func listenUDP(ns, addr string) (*udpListener, error) {
	var pc net.PacketConn
	if err := inNetns(ns, func() (err error) {
		pc, err = net.ListenPacket("udp4", addr)
		return err
	}); err != nil {
		return nil, err
	}
	u := &udpListener{conn: pc, done: make(chan struct{})}
	go func() {
		defer close(u.done)
		buf := make([]byte, 65536)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			u.mu.Lock()
			u.got = append(u.got, append([]byte(nil), buf[:n]...))
			u.mu.Unlock()
		}
	}()
	return u, nil
}

func (u *udpListener) count(tok string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, g := range u.got {
		if bytes.Contains(g, []byte(tok)) {
			n++
		}
	}
	return n
}

func (u *udpListener) port() uint16 { return uint16(u.conn.LocalAddr().(*net.UDPAddr).Port) }

func (u *udpListener) close() {
	u.conn.Close()
	<-u.done
}
