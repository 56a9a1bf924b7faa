package flows

import (
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strings"
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

// actionSamples has, for every action type, values that differ in each field, and
// copies of them that share no memory.
func actionSamples() []Action {
	mac1, mac2 := net.HardwareAddr{0xfa, 0x16, 0x3e, 0, 0, 1}, net.HardwareAddr{0xfa, 0x16, 0x3e, 0, 0, 2}
	ip1, ip2 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fe80::1")
	return []Action{
		PushVLAN{}, PopVLAN{}, OutputInPort{}, Normal{},
		SetVLANVID{1}, SetVLANVID{2}, SetTunID{1}, SetTunID{2}, Output{1}, Output{2}, GotoTable{1}, GotoTable{2},
		SetEthSrc{mac1}, SetEthSrc{mac2}, SetEthSrc{append(net.HardwareAddr(nil), mac1...)}, SetEthSrc{}, SetEthSrc{net.HardwareAddr{}},
		SetARPSha{mac1}, SetARPSha{mac2}, SetARPSha{append(net.HardwareAddr(nil), mac2...)},
		SetARPOp{1}, SetARPOp{2}, SetARPSpa{ip1}, SetARPSpa{netip.MustParseAddr("10.0.0.2")},
		Move{FieldEthSrc, FieldEthDst}, Move{FieldEthDst, FieldEthSrc}, Move{FieldARPSpa, FieldARPTpa},
		SetIPv6Src{ip2}, SetIPv6Src{netip.MustParseAddr("fe80::2")},
		SetICMPv6Type{135}, SetICMPv6Type{136}, SetNDReserved{0}, SetNDReserved{0x60000000},
		SetNDOptionsType{1}, SetNDOptionsType{2}, Resubmit{1}, Resubmit{2},
		Controller{}, Controller{ID: 1}, Controller{ID: 1, MeterID: 2}, Controller{MeterID: 2},
		Learn{Table: 20, Priority: 1, HardTimeout: 300, Cookie: 1}, Learn{Table: 20, Priority: 1, HardTimeout: 300, Cookie: 2},
		Learn{Table: 20, Priority: 2, HardTimeout: 300, Cookie: 1}, Learn{Table: 21, Priority: 1, HardTimeout: 300, Cookie: 1},
		Learn{Table: 20, Priority: 1, HardTimeout: 30, Cookie: 1},
	}
}

// TestActionEqualAgreesWithString: over every pair of sample actions, two actions
// are equal exactly when they print the same (the switch sees nothing else), and
// every action type has samples.
func TestActionEqualAgreesWithString(t *testing.T) {
	samples := actionSamples()
	covered := map[string]bool{}
	for _, a := range samples {
		covered[reflect.TypeOf(a).Name()] = true
		for _, b := range samples {
			if got, want := actionEqual(a, b), a.String() == b.String(); got != want {
				t.Errorf("actionEqual(%#v, %#v) = %v, want %v", a, b, got, want)
			}
		}
	}
	for _, name := range actionTypes(t) {
		if !covered[name] {
			t.Errorf("action type %s has no sample here", name)
		}
	}
}

// TestActionEqualKnowsEveryAction: every type with the action method is one of the
// cases of actionEqual's type switch, so that none is compared by reflect.
func TestActionEqualKnowsEveryAction(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "equal.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		fn, ok := n.(*ast.FuncDecl)
		if !ok || fn.Name.Name != "actionEqual" {
			return true
		}
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			if cc, ok := n.(*ast.CaseClause); ok {
				for _, e := range cc.List {
					if id, ok := e.(*ast.Ident); ok {
						cases[id.Name] = true
					}
				}
			}
			return true
		})
		return false
	})
	types := actionTypes(t)
	if len(types) < 20 {
		t.Fatalf("found only %d action types: %v", len(types), types)
	}
	for _, name := range types {
		if !cases[name] {
			t.Errorf("action type %s is not a case of actionEqual: it would be compared by reflect", name)
		}
	}
}

// actionTypes names the types of this package that have the action method.
func actionTypes(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var out []string
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, e.Name(), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Name.Name != "action" || fn.Recv == nil || len(fn.Recv.List) != 1 {
				continue
			}
			if id, ok := fn.Recv.List[0].Type.(*ast.Ident); ok {
				out = append(out, id.Name)
			}
		}
	}
	slices.Sort(out)
	return out
}

// TestFlowsEqual: FlowsEqual agrees with comparing the flows one by one, for slices
// that share memory and for copies.
func TestFlowsEqual(t *testing.T) {
	tb, err := NewTunBridge("vxlan")
	if err != nil {
		t.Fatal(err)
	}
	mac := net.HardwareAddr{0xfa, 0x16, 0x3e, 0, 0, 1}
	a := []Flow{
		tb.InstallARPResponder(MakeCookie(0, CatRemotePort, "p"), 5, netip.MustParseAddr("10.0.0.9"), mac),
		tb.InstallUnicastToTun(MakeCookie(0, CatRemotePort, "p"), 5, 1005, 3, mac),
	}
	b := slices.Clone(a)
	c := slices.Clone(a)
	c[1] = tb.InstallUnicastToTun(MakeCookie(0, CatRemotePort, "p"), 5, 1005, 4, mac)
	for _, tc := range []struct {
		name string
		x, y []Flow
		want bool
	}{
		{"same slice", a, a, true}, {"copy", a, b, true}, {"one flow differs", a, c, false},
		{"shorter", a, a[:1], false}, {"both empty", nil, []Flow{}, true}, {"prefix of itself", a[1:], a[:1], false},
	} {
		if got := FlowsEqual(tc.x, tc.y); got != tc.want || got != slices.EqualFunc(tc.x, tc.y, Flow.Equal) {
			t.Errorf("%s: FlowsEqual = %v, want %v", tc.name, got, tc.want)
		}
	}
}
