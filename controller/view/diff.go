package view

import (
	"fmt"
	"reflect"

	"github.com/lanes-net/lanes/store"
)

// Diff names the first field in which two views of one state differ, or "" when they
// are the same; Changes and State (how each came about) do not count. It is how an
// incremental view is checked against Compute.
func Diff(a, b *View) string {
	x, y := *a, *b
	x.Changes, y.Changes = Changes{}, Changes{}
	x.State, y.State = store.State{}, store.State{}
	if reflect.DeepEqual(x, y) {
		return ""
	}
	vx, vy := reflect.ValueOf(x), reflect.ValueOf(y)
	for i := range vx.NumField() {
		f := vx.Type().Field(i)
		if f.IsExported() && !reflect.DeepEqual(vx.Field(i).Interface(), vy.Field(i).Interface()) {
			return fmt.Sprintf("field %s", f.Name)
		}
	}
	return "an unexported field"
}
