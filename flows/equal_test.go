package flows

import (
	"net"
	"net/netip"
	"reflect"
	"testing"
)

// TestMatchEqualCoversEveryField: changing any one field of a Match makes it differ,
// so a field added to Match cannot be forgotten by Equal (a diff would then miss a
// changed flow).
func TestMatchEqualCoversEveryField(t *testing.T) {
	base := Match{}
	typ := reflect.TypeOf(base)
	for i := range typ.NumField() {
		m := base
		f := reflect.ValueOf(&m).Elem().Field(i)
		switch v := f.Addr().Interface().(type) {
		case *uint8:
			*v = 1
		case *uint16:
			*v = 1
		case *uint32:
			*v = 1
		case *uint64:
			*v = 1
		case *VLAN:
			*v = TagVID(1)
		case *net.HardwareAddr:
			*v = net.HardwareAddr{0xfa, 0x16, 0x3e, 0, 0, 1}
		case *netip.Addr:
			*v = netip.MustParseAddr("10.0.0.1")
		case *netip.Prefix:
			*v = netip.MustParsePrefix("10.0.0.0/24")
		default:
			t.Fatalf("Match.%s: type %s not covered by this test", typ.Field(i).Name, f.Type())
		}
		if m.Equal(base) || base.Equal(m) {
			t.Errorf("Match.Equal ignores %s", typ.Field(i).Name)
		}
		if !m.Equal(m) {
			t.Errorf("Match with %s set is not equal to itself", typ.Field(i).Name)
		}
	}
}

func TestFlowEqual(t *testing.T) {
	mac := net.HardwareAddr{0xfa, 0x16, 0x3e, 0, 0, 1}
	tb, err := NewTunBridge("vxlan")
	if err != nil {
		t.Fatal(err)
	}
	f := tb.InstallARPResponder(MakeCookie(0, CatRemotePort, "p"), 5, netip.MustParseAddr("10.0.0.9"), mac)
	g := tb.InstallARPResponder(MakeCookie(0, CatRemotePort, "p"), 5, netip.MustParseAddr("10.0.0.9"), append(net.HardwareAddr(nil), mac...))
	if !f.Equal(g) {
		t.Fatalf("equal flows from equal inputs differ:\n%s\n%s", f, g)
	}
	for name, h := range map[string]Flow{
		"other MAC":    tb.InstallARPResponder(MakeCookie(0, CatRemotePort, "p"), 5, netip.MustParseAddr("10.0.0.9"), net.HardwareAddr{0xfa, 0x16, 0x3e, 0, 0, 2}),
		"other IP":     tb.InstallARPResponder(MakeCookie(0, CatRemotePort, "p"), 5, netip.MustParseAddr("10.0.0.8"), mac),
		"other cookie": tb.InstallARPResponder(MakeCookie(0, CatRemotePort, "q"), 5, netip.MustParseAddr("10.0.0.9"), mac),
		"other round":  f.WithRound(2),
		"fewer actions": func() Flow {
			h := f
			h.Actions = h.Actions[:len(h.Actions)-1]
			return h
		}(),
	} {
		if f.Equal(h) != (f.String() == h.String()) || f.Equal(h) {
			t.Errorf("%s: Equal = %v for\n%s\n%s", name, f.Equal(h), f, h)
		}
	}
}
