package controller

import (
	"bytes"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/controller/ofsync"
)

// dhcp6Server answers the packet-ins of br-int's table 78 (router solicitations and
// DHCPv6 of ports on networks with an IPv6 subnet) and sends every such port its
// unsolicited router advertisements: right when the port appears (or its subnet's
// settings change), twice more at up to 16 s, then every 200-600 s, jittered, as radvd
// does. As with DHCPv4, the packet-in callback only rate-limits and queues; one
// worker answers and keeps the advertisement schedule.
type dhcp6Server struct {
	log   *slog.Logger
	m     *dhcp6Metrics
	out   func(ofport uint32, frame []byte) error
	ports atomic.Pointer[map[uint32]*dhcp6Port]
	queue chan ofsync.PacketIn
	kick  chan struct{}
	// take spends a token of the port's bucket: the DHCPv4 server's, since the switch
	// meters a port's DHCPv4, DHCPv6 and router solicitations as one.
	take   func(ofport uint32, now time.Time) bool
	rate   int // take's rate, for the refusal's reason
	timing atomic.Pointer[raTiming]

	stats *dhcpStats // dhcpstats.go
}

// raTiming bounds the periodic interval (min, max) and the gaps of the first few
// advertisements (initial): radvd's defaults, shortened by tests.
type raTiming struct{ min, max, initial time.Duration }

// raSchedule is one port's advertisement schedule, owned by run.
type raSchedule struct {
	ra      []byte // the unsolicited advertisement last sent
	next    time.Time
	initial int // unsolicited advertisements still to send at initialGap
}

// newDHCP6Server answers through out and limits each port with v4's buckets.
func newDHCP6Server(log *slog.Logger, m *dhcp6Metrics, v4 *dhcpServer, out func(uint32, []byte) error) *dhcp6Server {
	s := &dhcp6Server{log: log, m: m, out: out, queue: make(chan ofsync.PacketIn, dhcpQueueLen), kick: make(chan struct{}, 1),
		take: v4.take, rate: int(v4.rate), stats: newDHCPStats()}
	s.setTiming(raMinInterval, raMaxInterval, raInitialGap)
	empty := map[uint32]*dhcp6Port{}
	s.ports.Store(&empty)
	return s
}

// setTiming changes the advertisement intervals; the next scheduled ones follow it.
func (s *dhcp6Server) setTiming(minGap, maxGap, initialGap time.Duration) {
	s.timing.Store(&raTiming{min: minGap, max: max(minGap, maxGap), initial: initialGap})
}

// setPorts replaces what is answered on which ofport; the worker then advertises to
// new ports at once. Counters of ports that left are dropped.
func (s *dhcp6Server) setPorts(ports map[uint32]*dhcp6Port) {
	s.ports.Store(&ports)
	select {
	case s.kick <- struct{}{}:
	default:
	}
	keep := map[string]bool{}
	for _, p := range ports {
		keep[p.ID] = true
	}
	s.stats.keep(keep)
}

// packetIn is the PacketHandler of table 78: it never blocks.
func (s *dhcp6Server) packetIn(in ofsync.PacketIn) {
	if !s.take(in.InPort, time.Now()) {
		s.m.Dropped.WithLabelValues("rate").Inc()
		s.note(in.InPort, refuse("", "over the rate limit of %d requests/s", s.rate))
		return
	}
	select {
	case s.queue <- in:
	default:
		s.m.Dropped.WithLabelValues("queue").Inc()
	}
}

// run answers queued packet-ins and sends the scheduled advertisements until stop
// is closed.
func (s *dhcp6Server) run(stop <-chan struct{}) {
	sched := map[uint32]*raSchedule{}
	s.reschedule(sched, time.Now())
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		s.advertise(sched, now)
		wait := time.Hour
		for _, rs := range sched {
			wait = min(wait, max(0, rs.next.Sub(now)))
		}
		timer.Reset(wait) // Go 1.23 timers: no stale tick to drain
		select {
		case <-stop:
			return
		case in := <-s.queue:
			s.handle(in)
		case <-s.kick:
			s.reschedule(sched, time.Now())
		case <-timer.C:
		}
	}
}

// reschedule follows the published ports: a new port, or one whose advertisement
// changed (mode, prefix, MTU, DNS), is due now and gets its initial burst again.
func (s *dhcp6Server) reschedule(sched map[uint32]*raSchedule, now time.Time) {
	ports := *s.ports.Load()
	for of := range sched {
		if ports[of] == nil {
			delete(sched, of)
		}
	}
	for of, p := range ports {
		ra := p.unsolicitedAdvert()
		if rs := sched[of]; rs != nil && bytes.Equal(rs.ra, ra) {
			continue
		}
		sched[of] = &raSchedule{ra: ra, next: now, initial: raInitialCount}
	}
}

// advertise sends the advertisements that are due and schedules the next ones.
func (s *dhcp6Server) advertise(sched map[uint32]*raSchedule, now time.Time) {
	for of, rs := range sched {
		if rs.next.After(now) {
			continue
		}
		if err := s.out(of, rs.ra); err != nil {
			s.m.Dropped.WithLabelValues("packet-out").Inc()
			s.log.Debug("router advertisement not sent", "ofport", of, "err", err)
			rs.next = now.Add(raRetry)
			continue
		}
		s.m.Adverts.WithLabelValues("unsolicited").Inc()
		tm := s.timing.Load()
		if rs.initial--; rs.initial > 0 {
			rs.next = now.Add(min(tm.initial, tm.jitter()))
		} else {
			rs.next = now.Add(tm.jitter())
		}
	}
}

// jitter is a periodic interval, uniform in [min, max] (RFC 4861 6.2.4).
func (tm *raTiming) jitter() time.Duration {
	if tm.max <= tm.min {
		return tm.min
	}
	return tm.min + rand.N(tm.max-tm.min)
}

func (s *dhcp6Server) handle(in ofsync.PacketIn) {
	start := time.Now()
	p := (*s.ports.Load())[in.InPort]
	if p == nil {
		s.m.Verdicts.WithLabelValues(dhcpRefused).Inc()
		s.log.Debug("DHCPv6 or RS from an ofport with no IPv6 port", "ofport", in.InPort)
		return
	}
	reply, v := p.answer6(in.Frame)
	if v.Request != "" {
		s.m.Requests.WithLabelValues(v.Request).Inc()
	}
	if reply != nil {
		if err := s.out(in.InPort, reply); err != nil {
			v = refuse(v.Request, "packet-out failed: %v", err)
		} else {
			s.m.Answers.WithLabelValues(v.Reply).Inc()
			if v.Reply == "RA" {
				s.m.Adverts.WithLabelValues("solicited").Inc()
			}
			s.m.AnswerSeconds.Observe(time.Since(start).Seconds())
		}
	}
	s.m.Verdicts.WithLabelValues(v.Kind).Inc()
	if v.Kind == dhcpRefused {
		s.log.Debug("DHCPv6 refused", "port", p.Name, "why", v.String())
	}
	s.note(in.InPort, v)
}

func (s *dhcp6Server) note(ofport uint32, v dhcpVerdict) {
	if p := (*s.ports.Load())[ofport]; p != nil {
		s.stats.note(p.ID, v.Kind, p.dhcp6Summary(v))
	}
}

// DHCPv6Report is the responder's record of a port's router solicitations and
// DHCPv6: the counterpart of dhcpServer.DHCPReport.
func (s *dhcp6Server) DHCPv6Report(portID string) (api.DHCPReport, bool) {
	var p *dhcp6Port
	for _, q := range *s.ports.Load() {
		if q.ID == portID {
			p = q
		}
	}
	if p == nil {
		return api.DHCPReport{}, false
	}
	r := s.stats.get(portID)
	r.Serving = true
	if p.IP.IsValid() {
		r.Address = p.IP.String()
	}
	return r, true
}

// dhcp6Metrics count the IPv6 responder's work, as dhcpMetrics do for DHCPv4.
type dhcp6Metrics struct {
	Requests      *prometheus.CounterVec // RS and DHCPv6 message types
	Answers       *prometheus.CounterVec // RA, ADVERTISE, REPLY (with a NoAddrsAvail/NotOnLink suffix)
	Verdicts      *prometheus.CounterVec // answered, refused, released
	Dropped       *prometheus.CounterVec // rate, queue, packet-out
	Adverts       *prometheus.CounterVec // router advertisements sent: solicited, unsolicited
	AnswerSeconds prometheus.Histogram
}

func newDHCP6Metrics(reg prometheus.Registerer) *dhcp6Metrics {
	m := &dhcp6Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lanes_dhcpv6_requests_total", Help: "Router solicitations (RS) and DHCPv6 messages from local ports, by type.",
		}, []string{"type"}),
		Answers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lanes_dhcpv6_answers_total", Help: "Replies to router solicitations (RA) and DHCPv6 messages (ADVERTISE, REPLY; with NoAddrsAvail or NotOnLink when refused an address), by type.",
		}, []string{"type"}),
		Verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lanes_dhcpv6_verdicts_total", Help: "Table 78 packet-ins by outcome: answered, refused (not the port's MAC, for another server, ...), released.",
		}, []string{"verdict"}),
		Dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lanes_dhcpv6_dropped_total", Help: "Table 78 packet-ins dropped before parsing, over the port's rate (rate) or the queue full (queue), and unsolicited advertisements not sent (packet-out).",
		}, []string{"why"}),
		Adverts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lanes_router_advertisements_total", Help: "Router advertisements sent to local ports: solicited (answering an RS) or unsolicited (periodic).",
		}, []string{"kind"}),
		AnswerSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "lanes_dhcpv6_answer_seconds", Help: "Time from dequeuing an RS or DHCPv6 packet-in to its packet-out.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 14),
		}),
	}
	reg.MustRegister(m.Requests, m.Answers, m.Verdicts, m.Dropped, m.Adverts, m.AnswerSeconds)
	return m
}
