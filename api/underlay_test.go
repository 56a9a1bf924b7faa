package api

import (
	"crypto/sha1"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestTunnelPortNameIPv6 holds IPv6 tunnel names to Neutron's hash: the first 8
// characters of the lower-cased base32 SHA-1 of the address's text, so they fit a
// device name for every tunnel type and every spelling of an address is one port.
func TestTunnelPortNameIPv6(t *testing.T) {
	for _, c := range []struct{ typ, ip, want string }{
		// Worked out independently: python3 -c 'import hashlib,base64;
		// print(base64.b32encode(hashlib.sha1(b"fd00:31::2").digest())[:8].lower())'
		{TunnelVXLAN, "fd00:31::2", "vxlan-cpcmsbju"},
		{TunnelGeneve, "fd00:31::2", "geneve-cpcmsbju"},
		{TunnelGRE, "fd00:31::1", "gre-ccizjn2k"},
		{TunnelVXLAN, "2001:db8::1", "vxlan-d3wbibj5"},
		// Another spelling of the same address names the same port.
		{TunnelVXLAN, "FD00:0031:0::2", "vxlan-cpcmsbju"},
		// IPv4 keeps its hex form.
		{TunnelGeneve, "172.31.0.2", "geneve-ac1f0002"},
	} {
		got, err := TunnelPortName(c.typ, c.ip)
		if err != nil || got != c.want {
			t.Errorf("TunnelPortName(%s, %s) = %q, %v; want %q", c.typ, c.ip, got, err, c.want)
		}
		if len(got) > 15 {
			t.Errorf("%s: %d characters, a device name has at most 15", got, len(got))
		}
	}
	// The hash, recomputed here, for a spread of addresses: distinct and in base32's
	// lower-case alphabet.
	seen := map[string]string{}
	for i := range 300 {
		ip := fmt.Sprintf("fd00:31::%x", i+1)
		got, err := TunnelPortName(TunnelGeneve, ip)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha1.Sum([]byte(ip))
		if want := "geneve-" + strings.ToLower(base32.StdEncoding.EncodeToString(sum[:]))[:8]; got != want {
			t.Fatalf("%s: %s, want %s", ip, got, want)
		}
		if other, dup := seen[got]; dup {
			t.Fatalf("%s and %s share the name %s", ip, other, got)
		}
		seen[got] = ip
	}
	for _, bad := range []string{"", "fd00::1/64", "fe80::1%eth1", "::ffff:172.31.0.2", "vxlan"} {
		if n, err := TunnelPortName(TunnelVXLAN, bad); err == nil {
			t.Errorf("TunnelPortName(%q) = %s, want an error", bad, n)
		}
	}
}

// TestTunnelOverhead checks each overhead against its headers: outer IP (IPv4 20,
// IPv6 40), the tunnel's own (UDP 8 + VXLAN or Geneve 8; GRE with key 8), and the
// inner Ethernet 14. The IPv6 figures match what OVS's userspace datapath pushes
// (ofproto/trace: tnl_push header size 70 for VXLAN and Geneve, 62 for GRE, each
// with the outer Ethernet's 14) and what a DF ping proves on a 1500 underlay.
func TestTunnelOverhead(t *testing.T) {
	for _, c := range []struct {
		typ     string
		version int
		want    int
	}{
		{TunnelVXLAN, IPv4Underlay, 50}, {TunnelGeneve, IPv4Underlay, 50}, {TunnelGRE, IPv4Underlay, 42},
		{TunnelVXLAN, IPv6Underlay, 70}, {TunnelGeneve, IPv6Underlay, 70}, {TunnelGRE, IPv6Underlay, 62},
		{TunnelVXLAN, 0, 50}, // anything but 6 is IPv4
	} {
		if got := TunnelOverhead(c.typ, c.version); got != c.want {
			t.Errorf("TunnelOverhead(%s, %d) = %d, want %d", c.typ, c.version, got, c.want)
		}
	}
}

func TestTunnelIPv6(t *testing.T) {
	host := func(tip string) error { return ValidateHost(&Host{Name: "h1", TunnelIP: tip, TunnelType: TunnelVXLAN}) }
	for _, c := range []struct {
		name, ip, msg string // msg "": accepted
	}{
		{"ula", "fd00:31::1", ""},
		{"global", "2001:db8:1::10", ""},
		{"link-local", "fe80::1", "link-local"},
		{"zone", "fe80::1%eth1", "not an IPv4 or IPv6 address"},
		{"loopback", "::1", "not a global unicast"},
		{"unspecified", "::", "not a global unicast"},
		{"multicast", "ff02::1", "not a global unicast"},
		{"mapped", "::ffff:172.31.0.1", "give the IPv4 address 172.31.0.1"},
		{"upper case", "FD00:31::1", "canonical form: write fd00:31::1"},
		{"long form", "fd00:31:0:0:0:0:0:1", "canonical form: write fd00:31::1"},
		{"prefix", "fd00:31::1/64", "not an IPv4 or IPv6 address"},
	} {
		err := host(c.ip)
		var fe *FieldError
		switch {
		case c.msg == "" && err != nil:
			t.Errorf("%s: %s refused: %v", c.name, c.ip, err)
		case c.msg == "":
		case err == nil:
			t.Errorf("%s: %s accepted", c.name, c.ip)
		case !errors.Is(err, ErrInvalid) || !errors.As(err, &fe) || fe.Field != "host.tunnel_ip" || !strings.Contains(err.Error(), c.msg):
			t.Errorf("%s: %v, want an error naming host.tunnel_ip and saying %q", c.name, err, c.msg)
		}
	}
}
