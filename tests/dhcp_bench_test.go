package tests

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/lanes-net/lanes/hostwire/fakevm"
	"github.com/lanes-net/lanes/internal/lab"
)

// guestTap plays a guest's DHCP client on a port's host tap (as qemu would hold it).
type guestTap struct {
	f   *os.File
	mac net.HardwareAddr
}

func openGuest(b *testing.B, h *lab.Host, p vmPort) *guestTap {
	b.Helper()
	f, err := fakevm.OpenHostTap(h.Netns, p.Tap)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	mac, _ := net.ParseMAC(p.MAC)
	return &guestTap{f: f, mac: mac}
}

// discover writes one DHCPDISCOVER with transaction ID xid.
func (g *guestTap) discover(xid uint32) error {
	var id dhcpv4.TransactionID
	binary.BigEndian.PutUint32(id[:], xid)
	m, err := dhcpv4.NewDiscovery(g.mac, dhcpv4.WithTransactionID(id))
	if err != nil {
		return err
	}
	payload := m.ToBytes()
	frame := make([]byte, fakevm.VnetHdrLen+14+20+8+len(payload))
	e := frame[fakevm.VnetHdrLen:]
	copy(e[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(e[6:12], g.mac)
	binary.BigEndian.PutUint16(e[12:14], 0x0800)
	ip := e[14:34]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:4], uint16(28+len(payload)))
	copy(ip[16:20], []byte{255, 255, 255, 255})
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:12], ^uint16(sum))
	udp := e[34:]
	binary.BigEndian.PutUint16(udp[0:2], 68)
	binary.BigEndian.PutUint16(udp[2:4], 67)
	binary.BigEndian.PutUint16(udp[4:6], uint16(8+len(payload)))
	copy(udp[8:], payload) // UDP checksum 0: none, allowed over IPv4
	_, err = g.f.Write(frame)
	return err
}

// offer reads frames until a DHCPOFFER arrives (its transaction ID) or the deadline.
func (g *guestTap) offer(deadline time.Time) (uint32, error) {
	buf := make([]byte, 65536)
	if err := g.f.SetReadDeadline(deadline); err != nil {
		return 0, err
	}
	for {
		n, err := g.f.Read(buf)
		if err != nil {
			return 0, err
		}
		e := buf[fakevm.VnetHdrLen:n]
		if len(e) < 42 || binary.BigEndian.Uint16(e[12:14]) != 0x0800 || e[23] != 17 {
			continue
		}
		ihl := int(e[14]&0x0f) * 4
		udp := e[14+ihl:]
		if len(udp) < 8 || binary.BigEndian.Uint16(udp[0:2]) != 67 || binary.BigEndian.Uint16(udp[2:4]) != 68 {
			continue
		}
		m, err := dhcpv4.FromBytes(udp[8:])
		if err != nil || m.MessageType() != dhcpv4.MessageTypeOffer {
			continue
		}
		return binary.BigEndian.Uint32(m.TransactionID[:]), nil
	}
}

// BenchmarkDHCP measures lanesd's DHCP responder through the whole data path (tap,
// qbr with its iptables, veth, br-int's table 77, packet-in, lanesd, packet-out and
// back): DISCOVER -> OFFER latency over 200 ports one after the other, then a flood
// of DISCOVERs from one port while another port asks for its lease.
func BenchmarkDHCP(b *testing.B) {
	const ports = 200
	l := newLab(b, 1)
	h := l.Host("h1")
	ctl(b, l, h, "network", "create", "net-d", "--cidr", "10.4.0.0/16", "--gateway", "10.4.0.1", "--dns", "10.4.0.53")
	var guests []*guestTap
	for i := 0; i < ports; i++ {
		var p vmPort
		out := ctl(b, l, h, "-o", "json", "port", "create", fmt.Sprintf("d%d", i), "--network", "net-d", "--host", "h1", "--wait")
		if err := json.Unmarshal([]byte(out), &p); err != nil {
			b.Fatal(err)
		}
		guests = append(guests, openGuest(b, h, p))
	}
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		// Latency: each port's DISCOVER, retried every 500 ms as a client would (a
		// retry counts from the first send).
		var took []time.Duration
		retries := 0
		for i, g := range guests {
			xid := uint32(n<<16 | i)
			start := time.Now()
			for {
				if err := g.discover(xid); err != nil {
					b.Fatal(err)
				}
				got, err := g.offer(time.Now().Add(500 * time.Millisecond))
				if err == nil && got == xid {
					break
				}
				if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
					b.Fatal(err)
				}
				if retries++; time.Since(start) > 10*time.Second {
					b.Fatalf("port d%d: no OFFER within 10s", i)
				}
			}
			took = append(took, time.Since(start))
		}
		p50, p99 := percentile(took, 50), percentile(took, 99)
		b.ReportMetric(float64(p50.Microseconds())/1000, "offer-p50-ms")
		b.ReportMetric(float64(p99.Microseconds())/1000, "offer-p99-ms")
		b.Logf("DISCOVER -> OFFER over %d ports: p50 %s, p99 %s, max %s, %d retransmissions", ports, p50.Round(10*time.Microsecond),
			p99.Round(10*time.Microsecond), percentile(took, 100).Round(10*time.Microsecond), retries)

		// Flood: port 0 writes DISCOVERs as fast as it can for 3 s; port 1 asks for
		// its lease meanwhile.
		flooder, victim := guests[0], guests[1]
		const floodFor = 3 * time.Second
		var sent, answered atomic.Int64
		var wg sync.WaitGroup
		stop := make(chan struct{})
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := uint32(0); ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if flooder.discover(0xf0000000|i) == nil {
					sent.Add(1)
				}
			}
		}()
		go func() {
			defer wg.Done()
			for {
				if _, err := flooder.offer(time.Now().Add(200 * time.Millisecond)); err == nil {
					answered.Add(1)
				}
				select {
				case <-stop:
					return
				default:
				}
			}
		}()
		time.Sleep(500 * time.Millisecond) // let the flood build up before asking
		start := time.Now()
		leaseIn := time.Duration(-1)
		for time.Since(start) < floodFor-500*time.Millisecond && leaseIn < 0 {
			if err := victim.discover(0xabc00000 | uint32(n)); err != nil {
				b.Fatal(err)
			}
			if got, err := victim.offer(time.Now().Add(time.Second)); err == nil && got == 0xabc00000|uint32(n) {
				leaseIn = time.Since(start)
			}
		}
		time.Sleep(floodFor - time.Since(start) - 500*time.Millisecond)
		close(stop)
		wg.Wait()
		secs := floodFor.Seconds()
		b.ReportMetric(float64(answered.Load())/secs, "flood-answers/s")
		b.ReportMetric(float64(sent.Load())/secs, "flood-sent/s")
		b.ReportMetric(float64(leaseIn.Microseconds())/1000, "victim-offer-ms")
		if leaseIn < 0 {
			b.Errorf("the other port got no OFFER during the flood")
		}
		b.Logf("flood from one port: %.0f DISCOVERs/s sent, %.0f OFFERs/s answered (its meter: 20/s, burst 40); the other port's OFFER after %s",
			float64(sent.Load())/secs, float64(answered.Load())/secs, leaseIn.Round(10*time.Microsecond))

		// Capacity: every port floods at once (one writer round-robin over the taps),
		// so the meters leave lanesd as much as 20/s per port and the burst.
		sent.Store(0)
		answered.Store(0)
		stop = make(chan struct{})
		wg.Add(1 + len(guests))
		go func() {
			defer wg.Done()
			for i := uint32(0); ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if guests[int(i)%len(guests)].discover(0xe0000000|i) == nil {
					sent.Add(1)
				}
			}
		}()
		for _, g := range guests {
			go func() {
				defer wg.Done()
				for {
					if _, err := g.offer(time.Now().Add(200 * time.Millisecond)); err == nil {
						answered.Add(1)
					}
					select {
					case <-stop:
						return
					default:
					}
				}
			}()
		}
		time.Sleep(floodFor)
		close(stop)
		wg.Wait()
		b.ReportMetric(float64(answered.Load())/secs, "all-answers/s")
		b.Logf("all %d ports flooding: %.0f DISCOVERs/s sent, %.0f OFFERs/s answered by one lanesd", len(guests),
			float64(sent.Load())/secs, float64(answered.Load())/secs)
	}
}
