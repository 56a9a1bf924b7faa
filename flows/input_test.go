package flows

import (
	"net/netip"
	"reflect"
	"testing"
)

// TestInputsCompareEveryField changes each field of each owner input, one at a time,
// and wants equal to see it: a field an owner's flows depend on that equal ignored
// would keep stale flows after a change. It covers the fields of LocalPort too, which
// localIn carries whole, so a field added there without a comparison fails here.
func TestInputsCompareEveryField(t *testing.T) {
	check := func(name string, base any, eq func(a, b any) bool) {
		t.Helper()
		v := reflect.ValueOf(base)
		for i := range v.NumField() {
			changed := reflect.New(v.Type()).Elem()
			changed.Set(v)
			perturb(t, changed.Field(i))
			if eq(base, changed.Interface()) {
				t.Errorf("%s.equal ignores field %s", name, v.Type().Field(i).Name)
			}
		}
	}
	check("setupIn", setupIn{}, func(a, b any) bool { return a.(setupIn).equal(b.(setupIn)) })
	check("tunnelIn", tunnelIn{}, func(a, b any) bool { return a.(tunnelIn).equal(b.(tunnelIn)) })
	check("networkIn", networkIn{}, func(a, b any) bool { return a.(networkIn).equal(b.(networkIn)) })
	check("remoteIn", remoteIn{}, func(a, b any) bool { return a.(remoteIn).equal(b.(remoteIn)) })
	check("localIn", localIn{}, func(a, b any) bool { return a.(localIn).equal(b.(localIn)) })
	check("localIn.port", LocalPort{}, func(a, b any) bool {
		return localIn{port: a.(LocalPort)}.equal(localIn{port: b.(LocalPort)})
	})
}

// perturb makes v differ from its zero value.
func perturb(t *testing.T, v reflect.Value) {
	t.Helper()
	v = reflect.NewAt(v.Type(), v.Addr().UnsafePointer()).Elem() // unexported fields too
	switch {
	case v.Type() == reflect.TypeOf(netip.Addr{}):
		v.Set(reflect.ValueOf(netip.MustParseAddr("192.0.2.1")))
	case v.Type() == reflect.TypeOf(netip.Prefix{}):
		v.Set(reflect.ValueOf(netip.MustParsePrefix("192.0.2.0/24")))
	case v.Kind() == reflect.Bool:
		v.SetBool(true)
	case v.CanUint():
		v.SetUint(1)
	case v.CanInt():
		v.SetInt(1)
	case v.Kind() == reflect.String:
		v.SetString("x")
	case v.Kind() == reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
	case v.Kind() == reflect.Struct && v.NumField() > 0:
		perturb(t, v.Field(v.NumField()-1))
	default:
		t.Fatalf("perturb: %s of kind %s not handled", v.Type(), v.Kind())
	}
}
