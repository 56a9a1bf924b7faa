package hostwire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/hostwire/fakevm"
	"github.com/lanes-net/lanes/internal/ovsproc"
)

// TestVerdictAgreesWithKernel sends every packet of verdictSuites through the real
// rules (qbr bridges, br_netfilter, iptables-nft, ipset, conntrack) between fake VMs
// and checks that the kernel delivers exactly what the model allows.
//
// Each suite's state is applied once. A fourth VM, Q, with port security off, is the
// peer: it sends ingress probes to the port under test and receives its egress
// probes, so only the tested port's firewall decides. Probes are hand-made frames
// written to the sender's eth0 and recognised by a token on the receiver's eth0.
// After a batch, the sender sends a sentinel the model allows on the same path; frames
// of one path are forwarded in order, so once the sentinel is in, every earlier probe
// has been delivered or dropped: no probe waits for a timeout.
func TestVerdictAgreesWithKernel(t *testing.T) {
	e := newDPEnv(t)
	start := time.Now()
	vms := map[string]*modelVM{}
	for i, p := range []struct{ id, mac string }{{mP0, mP0MAC}, {mP1, "fa:16:3e:4c:2e:02"}, {mP2, mP2MAC}, {portID(9), macOf(9)}} {
		vms[p.id] = startModelVM(t, e, p.id, p.mac, fmt.Sprintf("198.51.100.%d", i+1))
	}
	q := vms[portID(9)]
	a := &agreement{t: t, e: e, vms: vms, q: q, next: 1, port: 20000}
	probes := 0
	for _, s := range verdictSuites() {
		t.Run(s.name, func(t *testing.T) {
			a.t = t
			probes += a.run(s)
		})
	}
	t.Logf("%d probes in %d suites, %v including setup", probes, len(verdictSuites()), time.Since(start).Round(time.Millisecond))
}

// modelVM is a fake VM with a packet socket on its eth0 that sends frames and
// records the probe tokens it receives.
type modelVM struct {
	id, mac string
	hw      net.HardwareAddr
	ifindex int
	fd      int

	mu   sync.Mutex
	got  map[uint32]bool
	wake chan struct{}
}

func startModelVM(t *testing.T, e *dpEnv, id, mac, ip string) *modelVM {
	t.Helper()
	if err := e.h.EnsurePort(PortSpec{ID: id, MAC: mac, MTU: 1450}); err != nil {
		t.Fatal(err)
	}
	// Test only: in lanes the controller adds qvo through the ovsdb package.
	if _, err := e.ovs.Vsctl("add-port", "br-int", api.QvoName(id), "tag=1"); err != nil {
		t.Fatal(err)
	}
	ns := "ltvm-" + ovsproc.RandomSuffix(6)
	t.Cleanup(func() { _ = fakevm.DeleteNetns(ns) })
	// The VM's own address is outside every probe's: its kernel never answers one.
	vm, err := fakevm.Start(fakevm.Config{HostNetns: e.ns.Name, Tap: api.TapName(id), VMNetns: ns, MAC: mac, IP: ip + "/24", MTU: 1450})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	v := &modelVM{id: id, mac: mac, got: map[uint32]bool{}, wake: make(chan struct{}, 1)}
	v.hw, _ = net.ParseMAC(mac)
	err = inNS(t, ns, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		v.ifindex = ifi.Index
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		v.fd = fd
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			return fmt.Errorf("bind packet socket: %w", err)
		}
		// Receive waits at most this long, so the reader notices Close.
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100000})
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go v.read(stop, done)
	t.Cleanup(func() {
		close(stop)
		<-done
		unix.Close(v.fd)
	})
	return v
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (v *modelVM) read(stop, done chan struct{}) {
	defer close(done)
	buf := make([]byte, 65536)
	for {
		select {
		case <-stop:
			return
		default:
		}
		n, from, err := unix.Recvfrom(v.fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if id, ok := probeToken(buf[:n]); ok {
			v.mu.Lock()
			v.got[id] = true
			v.mu.Unlock()
			select {
			case v.wake <- struct{}{}:
			default:
			}
		}
	}
}

func (v *modelVM) received(id uint32) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.got[id]
}

// waitFor waits until every id has arrived or the deadline passes.
func (v *modelVM) waitFor(ids []uint32, deadline time.Time) []uint32 {
	for {
		var missing []uint32
		for _, id := range ids {
			if !v.received(id) {
				missing = append(missing, id)
			}
		}
		left := time.Until(deadline)
		if len(missing) == 0 || left <= 0 {
			return missing
		}
		select {
		case <-v.wake:
		case <-time.After(left):
		}
	}
}

func (v *modelVM) send(frame []byte, dst net.HardwareAddr) error {
	var a [8]byte
	copy(a[:], dst)
	return unix.Sendto(v.fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: v.ifindex, Protocol: htons(uint16(binary.BigEndian.Uint16(frame[12:14]))), Halen: 6, Addr: a})
}

// probe is one frame of the agreement test.
type probe struct {
	id       uint32
	from, to *modelVM
	pkt      Packet
	srcMAC   string
	tcpFlags byte
	tcpAck   uint32
	echoID   uint16
	label    string // the case, for messages
	want     bool   // what the model says
	opener   bool   // a packet that must get through so the next phase has a connection
}

type agreement struct {
	t    *testing.T
	e    *dpEnv
	vms  map[string]*modelVM
	q    *modelVM
	next uint32 // probe ids
	port int    // unique ports, so no probe finds another's connection
}

func (a *agreement) newID() uint32 { a.next++; return a.next }

func (a *agreement) newPort() int { a.port++; return a.port }

// run applies one suite and checks its cases; it returns the number of probes sent.
func (a *agreement) run(s verdictSuite) int {
	t := a.t
	st := s.state
	st.Ports = append([]FirewallPort(nil), st.Ports...)
	// Every VM needs its chains; the ones the suite does not use are open, as Q is.
	for _, v := range a.vms {
		if !slices.ContainsFunc(st.Ports, func(p FirewallPort) bool { return p.ID == v.id }) {
			st.Ports = append(st.Ports, FirewallPort{ID: v.id, MAC: v.mac, FixedIPs: []string{"198.51.100.99"}, PortSecurity: false})
		}
	}
	if slices.ContainsFunc(s.state.Ports, func(p FirewallPort) bool { return p.ID == a.q.id }) {
		t.Fatalf("suite %s uses the peer port", s.name)
	}
	a.e.apply(t, st)
	// Every zone starts empty: state left by the previous suite must not admit a probe.
	if _, err := a.e.fw.forgetConnections(slices.Collect(func(yield func(int) bool) {
		for _, z := range a.e.fw.Zones() {
			if !yield(z) {
				return
			}
		}
	}), a.e.fw.admitted); err != nil {
		t.Fatal(err)
	}
	var phase1, phase2 []*probe
	for _, c := range s.cases {
		if c.noProbe != "" {
			t.Logf("%s: not sent: %s", c.name, c.noProbe)
			continue
		}
		x := a.vms[c.port]
		pr := &probe{id: a.newID(), pkt: c.pkt, srcMAC: c.pkt.SrcMAC, label: c.name, tcpFlags: 0x02}
		if c.dir == api.Ingress {
			pr.from, pr.to, pr.srcMAC = a.q, x, a.q.mac
		} else {
			pr.from, pr.to = x, a.q
			if pr.srcMAC == "" {
				pr.srcMAC = x.mac
			}
		}
		if pr.pkt.Protocol == 6 || pr.pkt.Protocol == 17 {
			if pr.pkt.SrcPort == 0 {
				pr.pkt.SrcPort = a.newPort()
			}
			if pr.pkt.DstPort == 0 {
				pr.pkt.DstPort = a.newPort()
			}
		}
		pr.echoID = uint16(pr.id)
		v, err := st.Verdict(c.port, c.dir, pr.pkt)
		if err != nil {
			t.Fatalf("%s: model: %v", c.name, err)
		}
		if !sameVerdict(v, c.want) {
			t.Fatalf("%s: the packet sent (%+v) gets %s from the model, the case wants %s", c.name, pr.pkt, v, c.want)
		}
		pr.want = v.Allowed
		if !pr.pkt.Established {
			phase1 = append(phase1, pr)
			continue
		}
		// A reply: first open the connection from the other side, through the same port.
		op := &probe{id: a.newID(), from: pr.to, to: pr.from, label: c.name + " (opening the connection)", tcpFlags: 0x02, opener: true, want: true}
		op.pkt = Packet{Src: pr.pkt.Dst, Dst: pr.pkt.Src, Protocol: pr.pkt.Protocol, SrcPort: pr.pkt.DstPort, DstPort: pr.pkt.SrcPort}
		op.srcMAC = op.from.mac
		switch {
		case pr.pkt.Protocol == 6:
			pr.tcpFlags, pr.tcpAck = 0x12, tcpSeq(op.id)+1
		case pr.pkt.Protocol == 1 && pr.pkt.ICMPType == 0:
			op.pkt.ICMPType = 8
		case pr.pkt.Protocol == 58 && pr.pkt.ICMPType == 129:
			op.pkt.ICMPType = 128
		case pr.pkt.Protocol == 17:
		default:
			t.Fatalf("%s: no opener for an established %+v", c.name, pr.pkt)
		}
		op.echoID, pr.echoID = uint16(op.id), uint16(op.id)
		opDir := api.Egress
		if c.dir == api.Egress {
			opDir = api.Ingress
		}
		if ov, err := st.Verdict(c.port, opDir, op.pkt); err != nil || !ov.Allowed {
			t.Fatalf("%s: the model drops the opening packet %+v: %s %v", c.name, op.pkt, ov, err)
		}
		phase1 = append(phase1, op)
		phase2 = append(phase2, pr)
	}
	a.batch(st, phase1)
	a.batch(st, phase2)
	for _, pr := range append(phase1, phase2...) {
		got := pr.to.received(pr.id)
		switch {
		case pr.opener && !got:
			t.Errorf("%s: the opening packet %+v was not delivered", pr.label, pr.pkt)
		case got != pr.want:
			t.Errorf("%s: %s -> %s %+v (from %s): model says allowed=%v, the kernel delivered=%v", pr.label, pr.from.id[:8], pr.to.id[:8], pr.pkt, pr.srcMAC, pr.want, got)
		}
	}
	return len(phase1) + len(phase2)
}

// batch sends probes, then one sentinel per path, and waits for the sentinels and for
// the probes the model allows.
func (a *agreement) batch(st FirewallState, probes []*probe) {
	t := a.t
	if len(probes) == 0 {
		return
	}
	type path struct{ from, to *modelVM }
	var paths []path
	for _, pr := range probes {
		if err := pr.from.send(pr.frame(t), pr.to.hw); err != nil {
			t.Fatalf("send %s: %v", pr.label, err)
		}
		if p := (path{pr.from, pr.to}); !slices.Contains(paths, p) {
			paths = append(paths, p)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range paths {
		s := a.sentinel(st, p.from, p.to)
		if err := p.from.send(s.frame(t), p.to.hw); err != nil {
			t.Fatalf("send sentinel: %v", err)
		}
		if missing := p.to.waitFor([]uint32{s.id}, deadline); len(missing) > 0 {
			t.Fatalf("sentinel %s -> %s not delivered in 10s", p.from.id[:8], p.to.id[:8])
		}
	}
	// The sentinels got through after every probe: what is missing now was dropped.
	// Allowed probes still missing get until the deadline, in case a frame was
	// overtaken after all; a mismatch is reported by the caller.
	for _, p := range paths {
		var want []uint32
		for _, pr := range probes {
			if pr.from == p.from && pr.to == p.to && pr.want {
				want = append(want, pr.id)
			}
		}
		if missing := p.to.waitFor(want, time.Now()); len(missing) > 0 {
			p.to.waitFor(missing, time.Now().Add(time.Second))
		}
	}
}

// sentinel is a DHCP frame every port's firewall passes: a server reply to the
// broadcast address into a port, a client discover out of it.
func (a *agreement) sentinel(st FirewallState, from, to *modelVM) *probe {
	t := a.t
	s := &probe{id: a.newID(), from: from, to: to, srcMAC: from.mac, label: "sentinel", want: true}
	port, dir := to.id, api.Ingress
	s.pkt = udpPkt("198.51.100.250", "255.255.255.255", 67, 68)
	if to == a.q {
		port, dir = from.id, api.Egress
		s.pkt = udpPkt("0.0.0.0", "255.255.255.255", 68, 67)
	}
	if v, err := st.Verdict(port, dir, s.pkt); err != nil || !v.Allowed {
		t.Fatalf("the model does not allow the sentinel %+v %s port %s: %s %v", s.pkt, dir, port, v, err)
	}
	return s
}

// The token: TCP probes carry it in the sequence number (a SYN must not carry data
// conntrack would have to account for), the others as the first 8 bytes after the
// UDP or ICMP header, or as the whole payload of other protocols.
const tokenMagic = 0xa54c4e53

func tcpSeq(id uint32) uint32 { return 0xa5000000 | id&0xffffff }

func (pr *probe) frame(t *testing.T) []byte {
	t.Helper()
	pkt := pr.pkt
	var token [8]byte
	binary.BigEndian.PutUint32(token[0:], tokenMagic)
	binary.BigEndian.PutUint32(token[4:], pr.id)
	var l4 []byte
	switch {
	case pkt.Protocol == 6:
		l4 = make([]byte, 20)
		binary.BigEndian.PutUint16(l4[0:], uint16(pkt.SrcPort))
		binary.BigEndian.PutUint16(l4[2:], uint16(pkt.DstPort))
		binary.BigEndian.PutUint32(l4[4:], tcpSeq(pr.id))
		binary.BigEndian.PutUint32(l4[8:], pr.tcpAck)
		l4[12], l4[13] = 5<<4, pr.tcpFlags
		binary.BigEndian.PutUint16(l4[14:], 65535)
	case pkt.Protocol == 17:
		l4 = make([]byte, 8, 16)
		binary.BigEndian.PutUint16(l4[0:], uint16(pkt.SrcPort))
		binary.BigEndian.PutUint16(l4[2:], uint16(pkt.DstPort))
		l4 = append(l4, token[:]...)
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
	case pkt.Protocol == 1 && pkt.Src.Is4(), pkt.Protocol == 58 && pkt.Src.Is6():
		l4 = make([]byte, 8, 16)
		l4[0], l4[1] = byte(pkt.ICMPType), byte(pkt.ICMPCode)
		binary.BigEndian.PutUint16(l4[4:], pr.echoID)
		binary.BigEndian.PutUint16(l4[6:], 1)
		l4 = append(l4, token[:]...)
	default:
		l4 = token[:]
	}
	src, dst := pkt.Src.AsSlice(), pkt.Dst.AsSlice()
	// Checksums: conntrack drops what fails them as invalid.
	var pseudo []byte
	if pkt.Src.Is4() {
		pseudo = append(append(append([]byte{}, src...), dst...), 0, byte(pkt.Protocol), byte(len(l4)>>8), byte(len(l4)))
	} else {
		pseudo = append(append(append([]byte{}, src...), dst...), 0, 0, byte(len(l4)>>8), byte(len(l4)), 0, 0, 0, byte(pkt.Protocol))
	}
	switch {
	case pkt.Protocol == 6:
		binary.BigEndian.PutUint16(l4[16:], checksum(pseudo, l4))
	case pkt.Protocol == 17:
		c := checksum(pseudo, l4)
		if c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(l4[6:], c)
	case pkt.Protocol == 1 && pkt.Src.Is4():
		binary.BigEndian.PutUint16(l4[2:], checksum(nil, l4))
	case pkt.Protocol == 58 && pkt.Src.Is6():
		binary.BigEndian.PutUint16(l4[2:], checksum(pseudo, l4))
	}
	var ip []byte
	ethType := []byte{0x08, 0x00}
	if pkt.Src.Is4() {
		ip = make([]byte, 20)
		ip[0], ip[8], ip[9] = 0x45, 64, byte(pkt.Protocol)
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
		binary.BigEndian.PutUint16(ip[4:], uint16(pr.id))
		copy(ip[12:], src)
		copy(ip[16:], dst)
		binary.BigEndian.PutUint16(ip[10:], checksum(nil, ip))
	} else {
		ethType = []byte{0x86, 0xdd}
		ip = make([]byte, 40)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(len(l4)))
		ip[6], ip[7] = byte(pkt.Protocol), 64
		copy(ip[8:], src)
		copy(ip[24:], dst)
	}
	smac, err := net.ParseMAC(pr.srcMAC)
	if err != nil {
		t.Fatalf("%s: source MAC %q: %v", pr.label, pr.srcMAC, err)
	}
	frame := append(append(append([]byte{}, pr.to.hw...), smac...), ethType...)
	return append(append(frame, ip...), l4...)
}

func checksum(pseudo, data []byte) uint16 {
	var sum uint32
	for _, b := range [][]byte{pseudo, data} {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// probeToken finds a probe's token where frame puts it; anything else (the VMs' own
// traffic, an ICMP error quoting a probe) is not a probe.
func probeToken(b []byte) (uint32, bool) {
	if len(b) < 14 {
		return 0, false
	}
	var proto int
	var l4 []byte
	v4 := false
	switch binary.BigEndian.Uint16(b[12:14]) {
	case 0x0800:
		ip := b[14:]
		if len(ip) < 20 || ip[0]>>4 != 4 {
			return 0, false
		}
		hl := int(ip[0]&0xf) * 4
		if len(ip) < hl {
			return 0, false
		}
		proto, l4, v4 = int(ip[9]), ip[hl:], true
	case 0x86dd:
		ip := b[14:]
		if len(ip) < 40 {
			return 0, false
		}
		proto, l4 = int(ip[6]), ip[40:]
	default:
		return 0, false
	}
	at := 0
	switch {
	case proto == 6:
		if len(l4) >= 20 && l4[4] == 0xa5 {
			return binary.BigEndian.Uint32(l4[4:]) & 0xffffff, true
		}
		return 0, false
	case proto == 17, proto == 1 && v4, proto == 58 && !v4:
		at = 8
	}
	if len(l4) < at+8 || binary.BigEndian.Uint32(l4[at:]) != tokenMagic {
		return 0, false
	}
	return binary.BigEndian.Uint32(l4[at+4:]), true
}

// TestProbeFrames checks the probe builder against its parser and known checksums,
// so that an agreement failure is the firewall's, not the test's.
func TestProbeFrames(t *testing.T) {
	to := &modelVM{hw: net.HardwareAddr{2, 0, 0, 0, 0, 1}}
	for i, pkt := range []Packet{
		tcpPkt("10.0.0.1", "10.0.0.2", 22), udpPkt("10.0.0.1", "10.0.0.2", 1, 2),
		icmpPkt("10.0.0.1", "10.0.0.2", 8, 0), icmpPkt("fd00::1", "fd00::2", 128, 0),
		protoPkt("10.0.0.1", "10.0.0.2", 253), tcpPkt("fd00::1", "fd00::2", 22), udpPkt("fd00::1", "fd00::2", 1, 2),
	} {
		pr := &probe{id: uint32(100 + i), to: to, pkt: pkt, srcMAC: "02:00:00:00:00:02", tcpFlags: 2, label: strconv.Itoa(i)}
		f := pr.frame(t)
		if id, ok := probeToken(f); !ok || id != pr.id {
			t.Errorf("%+v: token %d %v, want %d", pkt, id, ok, pr.id)
		}
		// A correct checksum sums, with the pseudo header, to 0xffff: checksum 0.
		l3 := 20
		if pkt.Src.Is6() {
			l3 = 40
		}
		l4 := f[14+l3:]
		var pseudo []byte
		src, dst := pkt.Src.AsSlice(), pkt.Dst.AsSlice()
		switch {
		case pkt.Protocol == 1:
		case pkt.Src.Is4():
			pseudo = append(append(append([]byte{}, src...), dst...), 0, byte(pkt.Protocol), 0, byte(len(l4)))
		default:
			pseudo = append(append(append([]byte{}, src...), dst...), 0, 0, 0, byte(len(l4)), 0, 0, 0, byte(pkt.Protocol))
		}
		if pkt.Protocol != 253 && checksum(pseudo, l4) != 0 {
			t.Errorf("%+v: bad L4 checksum", pkt)
		}
		if pkt.Src.Is4() && checksum(nil, f[14:34]) != 0 {
			t.Errorf("%+v: bad IPv4 header checksum", pkt)
		}
	}
}
