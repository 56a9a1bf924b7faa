package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/etcdembed"
	"github.com/lanes-net/lanes/store"
)

func freeURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return fmt.Sprintf("http://127.0.0.1:%d", l.Addr().(*net.TCPAddr).Port)
}

// The router and fip commands, through run as an operator types them, against a real
// (embedded) etcd.
func TestRouterCommands(t *testing.T) {
	e, err := etcdembed.Start(filepath.Join(t.TempDir(), "etcd"), freeURL(t), freeURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := store.Open(ctx, e.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, h := range []api.Host{
		{Name: "cmp1", TunnelIP: "192.0.2.1", TunnelType: api.TunnelVXLAN},
		{Name: "net1", TunnelIP: "192.0.2.10", TunnelType: api.TunnelVXLAN, L3: true},
	} {
		r, err := st.RegisterHost(ctx, h, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
	}
	lanesctl := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(append([]string{"--etcd", e.Endpoints()[0]}, args...), &out)
		return out.String(), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := lanesctl(args...)
		if err != nil {
			t.Fatalf("lanesctl %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
	must("network", "create", "public", "--external", "--provider", "flat", "--physnet", "physnet1",
		"--cidr", "203.0.113.0/24", "--gateway", "203.0.113.1", "--allocation-pool", "203.0.113.100-203.0.113.199")
	must("network", "create", "blue", "--cidr", "10.0.0.0/24", "--gateway", "10.0.0.1")
	must("network", "create", "red", "--cidr", "10.0.0.0/16")
	must("port", "create", "vm1", "--network", "blue", "--host", "cmp1")
	must("router", "create", "r1")
	must("router", "add-interface", "r1", "blue")
	must("router", "set-gateway", "r1", "public")
	out := must("-o", "json", "router", "show", "r1")
	var rs []routerView
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	if len(rs) != 1 || rs[0].Host != "net1" || rs[0].ActiveHost != "net1" || rs[0].Gateway.IP != "203.0.113.100" || rs[0].Interfaces[0].IP != "10.0.0.1" {
		t.Fatalf("router show: %s", out)
	}
	if _, err := lanesctl("router", "add-interface", "r1", "red"); err == nil || !strings.Contains(err.Error(), "overlaps") {
		t.Fatalf("overlapping network: %v", err)
	}
	if out := must("fip", "create", "public", "--port", "vm1"); !strings.Contains(out, "203.0.113.101") || !strings.Contains(out, "10.0.0.2") {
		t.Fatalf("fip create: %s", out)
	}
	if _, err := lanesctl("fip", "create", "public", "--port", "vm1"); err == nil || !strings.Contains(err.Error(), "already has floating IP") {
		t.Fatalf("second fip: %v", err)
	}
	if _, err := lanesctl("network", "delete", "blue"); err == nil || !strings.Contains(err.Error(), "router") {
		t.Fatalf("delete attached network: %v", err)
	}
	if _, err := lanesctl("network", "create", "x", "--cidr", "10.5.0.0/24", "--physnet", "p"); fieldOfErr(err) != "network.external" {
		t.Fatalf("--physnet without --external: %v", err)
	}
	must("fip", "disassociate", "203.0.113.101")
	deleted := func(kind, name string, args ...string) {
		t.Helper()
		out := must(append([]string{"-o", "json"}, args...)...)
		var d map[string]string
		if err := json.Unmarshal([]byte(out), &d); err != nil || d["deleted"] != kind || d["name"] != name || d["id"] == "" {
			t.Fatalf("lanesctl %s -o json: %q, %v", strings.Join(args, " "), out, err)
		}
	}
	deleted("floating IP", "203.0.113.101", "fip", "delete", "203.0.113.101")
	if out := must("fip", "list"); strings.Contains(out, "203.0.113.101") {
		t.Fatalf("fip list after delete: %s", out)
	}
	must("router", "remove-interface", "r1", "blue")
	deleted("router", "r1", "router", "delete", "r1")
	must("port", "delete", "vm1")
	must("network", "delete", "blue")
	must("network", "delete", "public")
	if out := must("router", "list"); strings.Contains(out, "r1") {
		t.Fatalf("router list after delete: %s", out)
	}
}

func fieldOfErr(err error) string {
	if fe, ok := err.(*api.FieldError); ok {
		return fe.Field
	}
	return ""
}
