package controller

import (
	"slices"
	"testing"
)

func TestVLANMap(t *testing.T) {
	m := newVLANMap()
	m.restore("x", 7)
	m.restore("y", 7) // conflicting claim: ignored
	m.restore("z", 4095)
	if v, _ := m.get("x"); v != 7 {
		t.Errorf("restored x = %d", v)
	}
	a, _ := m.get("a")
	b, _ := m.get("b")
	if a != 1 || b != 2 {
		t.Errorf("allocated %d %d, want the lowest free", a, b)
	}
	m.retain(map[string]bool{"x": true, "b": true})
	if c, _ := m.get("c"); c != 1 {
		t.Errorf("released VLAN not reused: %d", c)
	}
	if !slices.Equal(m.networks(), []string{"b", "c", "x"}) {
		t.Errorf("networks %v", m.networks())
	}
	full := newVLANMap()
	for i := 0; i < maxVLAN; i++ {
		if _, err := full.get(string(rune('A' + i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := full.get("one-too-many"); err == nil {
		t.Error("allocated beyond 4094 VLANs")
	}
}
