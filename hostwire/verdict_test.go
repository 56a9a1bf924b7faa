package hostwire

import (
	"errors"
	"strings"
	"testing"

	"github.com/lanes-net/lanes/api"
)

func TestVerdict(t *testing.T) {
	for _, s := range verdictSuites() {
		t.Run(s.name, func(t *testing.T) {
			for _, c := range s.cases {
				got, err := s.state.Verdict(c.port, c.dir, c.pkt)
				if err != nil {
					t.Errorf("%s: %v", c.name, err)
					continue
				}
				if !sameVerdict(got, c.want) {
					t.Errorf("%s: %s %s %+v:\n got %s (%+v)\nwant %s", c.name, c.dir, c.port, c.pkt, got, got, c.want)
				}
			}
		})
	}
}

func sameVerdict(got, want Verdict) bool {
	return got.Allowed == want.Allowed && got.Reason == want.Reason && got.GroupID == want.GroupID && got.RuleID == want.RuleID
}

// TestVerdictParsesEveryRenderedRule guards the model against rules it does not
// understand: every rule of every filter table of every suite must parse.
func TestVerdictParsesEveryRenderedRule(t *testing.T) {
	for _, s := range verdictSuites() {
		st := s.state
		st.Ports = append([]FirewallPort(nil), st.Ports...)
		for i := range st.Ports {
			st.Ports[i].Zone = ZoneStart + i
		}
		rs, err := Render(st)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		for id, tb := range rs.Tables {
			if id.Table != "filter" {
				continue
			}
			for chain, rules := range tb.Chains {
				for _, r := range rules {
					if _, err := parseRule(r); err != nil {
						t.Errorf("%s %s %s: %q: %v", s.name, id, chain, r, err)
					}
				}
			}
		}
	}
}

func TestVerdictDetails(t *testing.T) {
	st := goldenState()
	v, err := st.Verdict(mP0, api.Ingress, tcpPkt("203.0.113.7", "10.0.0.5", 22))
	if err != nil {
		t.Fatal(err)
	}
	if v.GroupName != "web" || v.Chain != IngressChain(mP0) || v.Rule != "-p tcp -m tcp --dport 22 -j RETURN" {
		t.Errorf("verdict %+v: want group web, chain %s and the tcp/22 rule", v, IngressChain(mP0))
	}
	if s := v.String(); s != "allowed by group web rule r1" {
		t.Errorf("String() = %q", s)
	}
	v, err = st.Verdict(mP0, api.Egress, tcpPkt("10.0.0.9", "10.0.0.6", 443))
	if err != nil {
		t.Fatal(err)
	}
	if v.Chain != SpoofChain(mP0) || !strings.HasPrefix(v.String(), "dropped (anti-spoofing") {
		t.Errorf("spoofed verdict %+v (%s)", v, v)
	}
	// P2 with only the group that is gone.
	gone := goldenState()
	gone.Ports[2].SecurityGroups = []string{"gone-group"}
	v, err = gone.Verdict(mP2, api.Ingress, tcpPkt("10.0.0.5", "10.0.0.7", 22))
	if err != nil {
		t.Fatal(err)
	}
	if s := v.String(); s != "dropped (no security group)" || v.Chain != ChainFallback {
		t.Errorf("String() = %q, chain %s", s, v.Chain)
	}
	// A port that is not in the state is refused, not guessed.
	st.Ports = st.Ports[1:]
	if _, err := st.Verdict(mP0, api.Ingress, tcpPkt("203.0.113.7", "10.0.0.5", 22)); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("unknown port: err = %v", err)
	}
}

func TestVerdictRejectsBadInput(t *testing.T) {
	st := goldenState()
	ok := tcpPkt("10.0.0.1", "10.0.0.5", 22)
	for _, c := range []struct {
		dir   string
		pkt   Packet
		field string
	}{
		{"sideways", ok, "direction"},
		{api.Ingress, Packet{Dst: ok.Dst, Protocol: 6}, "packet.src"},
		{api.Ingress, Packet{Src: ok.Src, Protocol: 6}, "packet.dst"},
		{api.Ingress, tcpPkt("10.0.0.1", "fd00::5", 22), "packet.dst"},
		{api.Ingress, protoPkt("10.0.0.1", "10.0.0.5", 0), "packet.protocol"},
		{api.Ingress, Packet{Src: ok.Src, Dst: ok.Dst, Protocol: 6, DstPort: 70000}, "packet.dst_port"},
		{api.Ingress, Packet{Src: ok.Src, Dst: ok.Dst, Protocol: 1, ICMPType: 256}, "packet.icmp_type"},
		{api.Egress, withMAC(ok, "not-a-mac"), "packet.src_mac"},
	} {
		_, err := st.Verdict(mP0, c.dir, c.pkt)
		var fe *api.FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("%s %+v: err = %v, want a field error on %s", c.dir, c.pkt, err, c.field)
		}
	}
}

// TestVerdictRefusesUnknownOptions: a rule the evaluator cannot read is an error,
// never a silent match or miss.
func TestVerdictRefusesUnknownOptions(t *testing.T) {
	for _, r := range []string{
		"-m hashlimit --hashlimit 5/s -j RETURN",
		"! -s 10.0.0.0/8 -j RETURN",
		"-p tcp -m tcp --tcp-flags SYN SYN -j RETURN",
		"-p icmp -m icmp --icmp-type echo-request -j RETURN",
		"-g lanes-x",
		"-m comment --comment \"open",
		"-m state --state ESTABLISHED -j RETURN",
		"-m conntrack --ctstate SNAT -j RETURN",
		"! -i qbr0d8a43d2-3a -j RETURN",
		"-j DROP --reject-with icmp-port-unreachable",
	} {
		if _, err := parseRule(r); err == nil {
			t.Errorf("%q parsed", r)
		}
	}
}

// TestEvaluatorMatches covers options the renderer may come to use, with the kernel's
// semantics of each.
func TestEvaluatorMatches(t *testing.T) {
	e := &evaluator{
		sets:   map[string]*IPSet{"s4": {Name: "s4", Family: V4, Members: []string{"10.1.0.0/16", "192.0.2.9"}}},
		srcMAC: "fa:16:3e:00:00:01", physIn: "tap0d8a43d2-3a", physOut: "qvb0d8a43d2-3a",
	}
	for _, c := range []struct {
		rule string
		pkt  Packet
		want bool
	}{
		{"-p tcp -m multiport --dports 80,443,1000:2000 -j RETURN", tcpPkt("10.0.0.1", "10.0.0.2", 443), true},
		{"-p tcp -m multiport --dports 80,443,1000:2000 -j RETURN", tcpPkt("10.0.0.1", "10.0.0.2", 1500), true},
		{"-p tcp -m multiport --dports 80,443,1000:2000 -j RETURN", tcpPkt("10.0.0.1", "10.0.0.2", 444), false},
		{"-p udp -m udp --sport 67 --dport 68 -j RETURN", udpPkt("10.0.0.1", "10.0.0.2", 67, 68), true},
		{"-p udp -m udp --sport 67 --dport 68 -j RETURN", udpPkt("10.0.0.1", "10.0.0.2", 68, 67), false},
		{"-p udp -m udp --dport 68 -j RETURN", tcpPkt("10.0.0.1", "10.0.0.2", 68), false},
		{"-m set --match-set s4 src -j RETURN", tcpPkt("10.1.2.3", "10.0.0.2", 1), true},
		{"-m set --match-set s4 dst -j RETURN", tcpPkt("10.1.2.3", "10.0.0.2", 1), false},
		{"-m set --match-set s4 dst -j RETURN", tcpPkt("10.0.0.2", "192.0.2.9", 1), true},
		{"-m conntrack --ctstate INVALID -j DROP", icmpPkt("10.0.0.1", "10.0.0.2", 0, 0), true},
		{"-m conntrack --ctstate INVALID -j DROP", icmpPkt("10.0.0.1", "10.0.0.2", 8, 0), false},
		{"-m state --state RELATED,ESTABLISHED -j RETURN", established(udpPkt("10.0.0.1", "10.0.0.2", 1, 2)), true},
		{"-m state --state INVALID -j DROP", icmpPkt("fe80::1", "ff02::1", 135, 0), false}, // untracked
		{"-m physdev --physdev-in tap+ --physdev-is-bridged --physdev-is-in -j RETURN", tcpPkt("10.0.0.1", "10.0.0.2", 1), true},
		{"-m physdev --physdev-out tap+ -j RETURN", tcpPkt("10.0.0.1", "10.0.0.2", 1), false},
		{"-s 10.0.0.1/32 -m mac --mac-source FA:16:3E:00:00:01 -j RETURN", tcpPkt("10.0.0.1", "10.0.0.2", 1), true},
		{"-s 10.0.0.1/32 -m mac --mac-source FA:16:3E:00:00:02 -j RETURN", tcpPkt("10.0.0.1", "10.0.0.2", 1), false},
		{"-s fd00::/64 -j RETURN", tcpPkt("10.0.0.1", "10.0.0.2", 1), false},
		{"-p icmp -m icmp --icmp-type 3/1 -j REJECT --reject-with icmp-port-unreachable", icmpPkt("10.0.0.1", "10.0.0.2", 3, 1), true},
		{"-p icmp -m icmp --icmp-type 3/1 -j RETURN", icmpPkt("10.0.0.1", "10.0.0.2", 3, 2), false},
		{"-p ipv6-icmp -m icmp6 --icmpv6-type 1 -j RETURN", icmpPkt("fd00::1", "fd00::2", 1, 6), true},
	} {
		r, err := parseRule(c.rule)
		if err != nil {
			t.Errorf("%q: %v", c.rule, err)
			continue
		}
		e.pkt, e.state = c.pkt, c.pkt.conntrackState()
		if got, err := e.match(r); err != nil || got != c.want {
			t.Errorf("%q with %+v: match %v %v, want %v", c.rule, c.pkt, got, err, c.want)
		}
	}
}

func BenchmarkVerdict(b *testing.B) {
	st := goldenState()
	pkt := tcpPkt("192.168.3.4", "10.0.0.5", 8081)
	for b.Loop() {
		if _, err := st.Verdict(mP0, api.Ingress, pkt); err != nil {
			b.Fatal(err)
		}
	}
}
