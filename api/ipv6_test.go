package api

import (
	"net"
	"net/netip"
	"testing"
)

// The addresses a Linux guest forms from its MAC (RFC 4291 appendix A): the
// universal/local bit flipped, ff:fe in the middle.
func TestEUI64(t *testing.T) {
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	if got := LinkLocal(mac).String(); got != "fe80::5054:ff:fe12:3456" {
		t.Errorf("link-local %s", got)
	}
	fa, _ := net.ParseMAC("fa:16:3e:00:00:01")
	if got := EUI64(netip.MustParsePrefix("fd00:1::5/64"), fa).String(); got != "fd00:1::f816:3eff:fe00:1" {
		t.Errorf("EUI-64 in fd00:1::/64 (host bits given): %s", got)
	}
}
