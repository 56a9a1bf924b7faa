package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/etcdembed"
	"github.com/lanes-net/lanes/store"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

// TestMain lets the tests run this binary as lanesctl itself, to see main's exit codes.
func TestMain(m *testing.M) {
	if os.Getenv("LANESCTL_TEST_MAIN") == "1" {
		os.Args = append([]string{"lanesctl"}, os.Args[1:]...)
		main()
		return
	}
	os.Exit(m.Run())
}

// lanesctl runs the real main in a child process: stdout, stderr and the exit code.
func lanesctl(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "LANESCTL_TEST_MAIN=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

// call runs lanesctl in this process, as main would, and returns stdout and the exit code.
func call(args ...string) (string, int, error) {
	var out bytes.Buffer
	err := run(args, &out)
	return out.String(), exitCode(err), err
}

// walk calls f for every command of lanesctl's tree, lanesctl itself included.
func walk(c *cobra.Command, f func(*cobra.Command)) {
	f(c)
	for _, sub := range c.Commands() {
		walk(sub, f)
	}
}

func TestHelpOnEveryCommand(t *testing.T) {
	root := newRoot(&globals{out: io.Discard})
	n := 0
	walk(root, func(cmd *cobra.Command) {
		n++
		words := strings.Fields(strings.TrimPrefix(cmd.CommandPath(), "lanesctl"))
		forms := [][]string{append(slices.Clone(words), "--help"), append(slices.Clone(words), "-h")}
		if len(words) > 0 {
			forms = append(forms, append([]string{"help"}, words...))
		}
		for _, form := range forms {
			out, code, err := call(form...)
			if code != 0 {
				t.Errorf("lanesctl %s: exit %d (%v)", strings.Join(form, " "), code, err)
				continue
			}
			if !strings.Contains(out, "Usage:\n  "+cmd.CommandPath()) || !strings.Contains(out, cmd.Long) {
				t.Errorf("lanesctl %s: help is\n%s", strings.Join(form, " "), out)
			}
			// Every flag the command parses is listed, and the global ones.
			cmd.Flags().VisitAll(func(f *pflag.Flag) {
				if !strings.Contains(out, "--"+f.Name+" ") {
					t.Errorf("lanesctl %s does not list --%s:\n%s", strings.Join(form, " "), f.Name, out)
				}
			})
			if !strings.Contains(out, "--etcd URLS") || !strings.Contains(out, "-o, --output FORMAT") {
				t.Errorf("lanesctl %s does not list the global flags:\n%s", strings.Join(form, " "), out)
			}
		}
		if cmd.Short == "" {
			t.Errorf("lanesctl %s: no short description", strings.Join(words, " "))
		}
	})
	if n < len(commands)+len(groups) {
		t.Errorf("only %d commands in the tree, %d in the table", n, len(commands))
	}
	// Every command of the table has an example, and its flags reach cobra.
	for i := range commands {
		e := &commands[i]
		if e.example == "" || !strings.HasPrefix(e.example, "lanesctl "+e.path) && !strings.Contains(e.example, "lanesctl "+e.path) {
			t.Errorf("%s: example %q does not show the command", e.path, e.example)
		}
		if _, err := define(e); err != nil {
			t.Error(err)
		}
	}
	// The flags of network create, spelled out: the help is not only self-consistent.
	out, _, _ := call("network", "create", "--help")
	for _, f := range []string{"--cidr", "--vni", "--mtu", "--underlay-mtu", "--gateway", "--dns", "--no-dhcp",
		"--ipv6-cidr", "--ipv6-address-mode", "--ipv6-gateway", "--ipv6-dns", "Examples:"} {
		if !strings.Contains(out, f) {
			t.Errorf("network create --help lacks %s", f)
		}
	}
	// Through the real main: exit status 0 and the help on stdout.
	if out, _, code := lanesctl(t, "network", "create", "--help"); code != 0 || !strings.Contains(out, "--cidr") {
		t.Errorf("network create --help: exit %d, %q", code, out)
	}
}

func TestUnknownCommandSuggests(t *testing.T) {
	_, code, err := call("netwrok", "list")
	if code != exitUsage || !strings.Contains(err.Error(), `did you mean "network list"`) {
		t.Errorf("netwrok list: exit %d, %v", code, err)
	}
	_, code, err = call("port", "delte", "x")
	if code != exitUsage || !strings.Contains(err.Error(), `did you mean "port delete"`) {
		t.Errorf("port delte: exit %d, %v", code, err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startEtcd runs an embedded etcd and returns its client URL.
func startEtcd(t *testing.T) string {
	t.Helper()
	return startEtcdServer(t).Endpoints()[0]
}

// startEtcdServer runs an embedded etcd, stopped at the end of the test.
func startEtcdServer(t *testing.T) *etcdembed.Server {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "etcd")
	var lastErr error
	for range 5 {
		e, err := etcdembed.Start(dir, fmt.Sprintf("http://127.0.0.1:%d", freePort(t)), fmt.Sprintf("http://127.0.0.1:%d", freePort(t)))
		if err == nil {
			t.Cleanup(e.Close)
			return e
		}
		lastErr = err
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	t.Fatalf("embedded etcd: %v", lastErr)
	return nil
}

// lab is an etcd with a registered host, a network, a group and a port.
func lab(t *testing.T) (etcd string, st *store.Store) {
	t.Helper()
	etcd = startEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	st, err := store.Open(ctx, []string{etcd})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.RegisterHost(ctx, api.Host{Name: "cmp1", TunnelIP: "192.0.2.1", TunnelType: "vxlan"}, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"network", "create", "blue", "--cidr", "10.0.0.0/24", "--gateway", "10.0.0.1"},
		{"sg", "create", "web"},
		{"sg", "rule", "add", "web", "--direction", "ingress", "--protocol", "tcp", "--port", "22"},
		{"port", "create", "vm1", "--network", "blue", "--host", "cmp1", "--sg", "web"},
	} {
		if _, _, err := call(append([]string{"--etcd", etcd}, args...)...); err != nil {
			t.Fatalf("lanesctl %v: %v", args, err)
		}
	}
	return etcd, st
}

// Each exit code of the table comes from a real failure, through the real main.
func TestExitCodes(t *testing.T) {
	etcd, _ := lab(t)
	dead := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"network", "list"}, exitOK, "blue"},
		{[]string{"network", "frobnicate"}, exitUsage, "unknown command"},
		{[]string{"network", "show"}, exitUsage, "want NETWORK"},
		{[]string{"network", "create", "red", "--cidr", "10.1.0.0/33"}, exitUsage, "network.cidr"},
		{[]string{"network", "list", "-o", "xml"}, exitUsage, "must be table, json or yaml"},
		{[]string{"network", "show", "nosuch"}, exitNotFound, "not found"},
		{[]string{"port", "delete", "nosuch"}, exitNotFound, "not found"},
		{[]string{"netwrok", "list"}, exitUsage, `did you mean "network list"`},
		{[]string{"network", "list", "--bogus"}, exitUsage, "unknown flag: --bogus"},
		{[]string{"network"}, exitUsage, "missing subcommand"},
		{[]string{"help", "nosuch"}, exitUsage, "unknown command"},
		{[]string{"help", "port", "delte"}, exitUsage, `did you mean "port delete"`},
		{[]string{"completion", "tcsh"}, exitUsage, "unknown command"},
		{[]string{"completion"}, exitUsage, "want bash"},
		{[]string{"-x"}, exitUsage, "unknown shorthand flag"},
		{[]string{"network", "delete", "blue"}, exitError, "port vm1 ("},
		{[]string{"sg", "delete", "web"}, exitError, "port vm1 ("},
		{[]string{"network", "create", "blue", "--cidr", "10.2.0.0/24"}, exitError, "already used"},
		{[]string{"router", "delete", "nosuch"}, exitNotFound, "not found"},
		{[]string{"port", "seed", "vm1", "--ssh-key", filepath.Join(t.TempDir(), "absent.pub")}, exitUsage, "absent.pub"},
		{[]string{"pki", "init", "--dir", filepath.Join(notDir, "pki")}, exitError, "not a directory"},
	} {
		stdout, stderr, code := lanesctl(t, append([]string{"--etcd", etcd}, c.args...)...)
		if code == exitOK {
			stderr = stdout
		}
		if code != c.code || !strings.Contains(stderr, c.msg) {
			t.Errorf("lanesctl %v: exit %d, stderr %q; want exit %d and %q", c.args, code, stderr, c.code, c.msg)
		}
	}
	_, stderr, code := lanesctl(t, "--etcd", dead, "--etcd-dial-timeout", "1s", "network", "list")
	if code != exitUnreachable {
		t.Errorf("no etcd: exit %d, %s", code, stderr)
	}
	// Usage is checked before the store is dialled: a dead store does not hide it.
	for _, args := range [][]string{{"network", "create"}, {"network", "list", "extra"}, {"port", "create", "vm9", "--network"}} {
		if _, stderr, code := lanesctl(t, append([]string{"--etcd", dead, "--etcd-dial-timeout", "1s"}, args...)...); code != exitUsage {
			t.Errorf("lanesctl %v against no store: exit %d, %s", args, code, stderr)
		}
	}
	// A store that was there and stopped.
	e := startEtcdServer(t)
	url := e.Endpoints()[0]
	if _, stderr, code := lanesctl(t, "--etcd", url, "network", "list"); code != exitOK {
		t.Fatalf("before the stop: exit %d, %s", code, stderr)
	}
	e.Close()
	_, stderr, code = lanesctl(t, "--etcd", url, "--etcd-dial-timeout", "1s", "network", "list")
	if code != exitUnreachable || !strings.Contains(stderr, "etcd at") {
		t.Errorf("stopped etcd: exit %d, %s", code, stderr)
	}
	if code := exitUnreachable; code != 4 || exitNotFound != 3 || exitUsage != 2 || exitError != 1 {
		t.Errorf("the exit codes moved: %d %d %d %d", exitError, exitUsage, exitNotFound, exitUnreachable)
	}
	_, stderr, code = lanesctl(t, "status", "--socket", filepath.Join(t.TempDir(), "none.sock"))
	if code != exitUnreachable || !strings.Contains(stderr, "is lanesd running") {
		t.Errorf("no lanesd: exit %d, %s", code, stderr)
	}
}

// -o json and -o yaml describe the same objects, and -o goes before or after the command.
func TestOutputFormats(t *testing.T) {
	etcd, _ := lab(t)
	for _, words := range [][]string{{"network", "list"}, {"port", "list"}, {"sg", "list"}, {"host", "list"}, {"port", "show", "vm1"}} {
		j, _, err := call(append([]string{"--etcd", etcd, "-o", "json"}, words...)...)
		if err != nil {
			t.Fatal(err)
		}
		y, _, err := call(append(append([]string{"--etcd", etcd}, words...), "-o", "yaml")...)
		if err != nil {
			t.Fatal(err)
		}
		var fromJSON, fromYAML any
		if err := json.Unmarshal([]byte(j), &fromJSON); err != nil {
			t.Fatalf("%v -o json: %v\n%s", words, err, j)
		}
		if err := yaml.Unmarshal([]byte(y), &fromYAML); err != nil {
			t.Fatalf("%v -o yaml: %v\n%s", words, err, y)
		}
		if !reflect.DeepEqual(fromJSON, fromYAML) || strings.HasPrefix(y, "[") {
			t.Errorf("%v: json and yaml differ:\n%s\n%s", words, j, y)
		}
		if list, ok := fromJSON.([]any); !ok || len(list) == 0 {
			t.Errorf("%v: empty output %s", words, j)
		}
	}
	// Into typed objects too.
	y, _, _ := call("--etcd", etcd, "network", "list", "-o=yaml")
	var ns []api.Network
	if err := yaml.Unmarshal([]byte(y), &ns); err != nil || len(ns) != 1 || ns[0].Name != "blue" || ns[0].CIDR != "10.0.0.0/24" {
		t.Errorf("network list -o yaml: %+v, %v", ns, err)
	}
	// port update changes addresses and clears allowed address pairs.
	var ps []portView
	mustJSON := func(out string, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		ps = nil // Unmarshal into old elements would keep fields the new JSON omits
		if err := json.Unmarshal([]byte(out), &ps); err != nil || len(ps) != 1 {
			t.Fatalf("%v: %s", err, out)
		}
	}
	out, _, err := call("--etcd", etcd, "-o", "json", "port", "update", "vm1", "--ip", "10.0.0.50", "--mac", "fa:16:3e:00:00:50", "--allowed-address", "10.0.0.200")
	mustJSON(out, err)
	if p := ps[0]; len(p.FixedIPs) != 1 || p.FixedIPs[0] != "10.0.0.50" || p.MAC != "fa:16:3e:00:00:50" || len(p.AllowedAddressPairs) != 1 {
		t.Errorf("port update: %+v", p.Port)
	}
	out, _, err = call("--etcd", etcd, "-o", "json", "port", "update", "vm1", "--clear-allowed-address", "--ip", "")
	mustJSON(out, err)
	if p := ps[0]; len(p.AllowedAddressPairs) != 0 || len(p.FixedIPs) != 1 || p.FixedIPs[0] == "10.0.0.50" || p.MAC != "fa:16:3e:00:00:50" {
		t.Errorf("port update --clear-allowed-address --ip '': %+v", p.Port)
	}
	out, _, err = call("--etcd", etcd, "-o", "json", "port", "update", "vm1", "--allowed-address", "10.0.0.201", "-o", "json")
	mustJSON(out, err)
	out, _, err = call("--etcd", etcd, "-o", "json", "port", "update", "vm1", "--allowed-address", "")
	mustJSON(out, err)
	if len(ps[0].AllowedAddressPairs) != 0 {
		t.Errorf("--allowed-address '' kept %+v", ps[0].AllowedAddressPairs)
	}
	// Every mutating command answers -o json with what it changed.
	out, _, err = call("--etcd", etcd, "-o", "json", "sg", "rule", "add", "web", "--direction", "egress")
	var rule api.Rule
	if err != nil || json.Unmarshal([]byte(out), &rule) != nil || rule.ID == "" || rule.Direction != "egress" {
		t.Errorf("sg rule add -o json: %q, %v", out, err)
	}
	out, _, err = call("--etcd", etcd, "sg", "rule", "add", "web", "--direction", "ingress", "--protocol", "udp", "--port", "53")
	if err != nil || !strings.Contains(out, "added to security group web (") {
		t.Errorf("sg rule add: %q, %v", out, err)
	}
	out, _, err = call("--etcd", etcd, "-o", "json", "sg", "rule", "delete", "web", rule.ID)
	var rd map[string]string
	if err != nil || json.Unmarshal([]byte(out), &rd) != nil || rd["deleted"] != "rule" || rd["id"] != rule.ID || rd["security_group"] != "web" {
		t.Errorf("sg rule delete -o json: %q, %v", out, err)
	}
	out, _, err = call("-o", "json", "pki", "init", "--dir", filepath.Join(t.TempDir(), "pki"))
	var pk pkiResult
	if err != nil || json.Unmarshal([]byte(out), &pk) != nil || len(pk.Wrote) != 6 || pk.CAValidUntil == "" {
		t.Errorf("pki init -o json: %q, %v", out, err)
	}
	// Deletes say what they deleted.
	out, _, err = call("--etcd", etcd, "port", "delete", "vm1", "-o", "json")
	var del map[string]string
	if err != nil || json.Unmarshal([]byte(out), &del) != nil || del["deleted"] != "port" || del["name"] != "vm1" || del["id"] == "" {
		t.Errorf("port delete -o json: %q, %v", out, err)
	}
	out, _, err = call("--etcd", etcd, "network", "delete", "blue")
	if err != nil || !strings.HasPrefix(out, "deleted network blue (") {
		t.Errorf("network delete: %q, %v", out, err)
	}
}

func TestCompletionLiveNames(t *testing.T) {
	etcd, _ := lab(t)
	complete := func(words ...string) []string {
		t.Helper()
		out, _, err := call(append([]string{cobra.ShellCompNoDescRequestCmd, "--etcd", etcd}, words...)...)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if !strings.HasPrefix(l, ":") { // the directive
				got = append(got, l)
			}
		}
		return got
	}
	for _, c := range []struct {
		words []string
		want  []string
	}{
		{[]string{"net"}, []string{"network"}},
		{[]string{"network", ""}, []string{"create", "delete", "list", "show", "update"}},
		{[]string{"sg", "rule", ""}, []string{"add", "delete"}},
		{[]string{"network", "show", ""}, []string{"blue"}},
		{[]string{"port", "delete", "v"}, []string{"vm1"}},
		{[]string{"port", "create", "vm2", "--network", ""}, []string{"blue"}},
		{[]string{"port", "create", "vm2", "--network", "blue", "--host", ""}, []string{"cmp1"}},
		{[]string{"port", "update", "vm1", "--sg", "w"}, []string{"web"}},
		{[]string{"host", "delete", ""}, []string{"cmp1"}},
		{[]string{"trace", "--from-port", ""}, []string{"vm1"}},
		{[]string{"flows", ""}, []string{"br-int", "br-tun"}},
		{[]string{"network", "create", "x", "--ci"}, []string{"--cidr"}},
		{[]string{"network", "create", "x", "--ipv6-address-mode", ""}, []string{"dhcpv6-stateful", "dhcpv6-stateless", "slaac"}},
		{[]string{"network", "list", "-o", ""}, []string{"json", "table", "yaml"}},
		{[]string{"completion", ""}, []string{"bash", "fish", "powershell", "zsh"}},
	} {
		if got := complete(c.words...); !reflect.DeepEqual(got, c.want) {
			t.Errorf("complete %q: %q, want %q", c.words, got, c.want)
		}
	}
	// A name created after the first completion shows up: nothing is cached.
	if _, _, err := call("--etcd", etcd, "network", "create", "green", "--cidr", "10.5.0.0/24"); err != nil {
		t.Fatal(err)
	}
	if got := complete("network", "show", ""); !reflect.DeepEqual(got, []string{"blue", "green"}) {
		t.Errorf("after create: %q", got)
	}
	for _, sh := range []string{"bash", "zsh", "fish"} {
		if out, _, err := call("completion", sh); err != nil || !strings.Contains(out, cobra.ShellCompRequestCmd) {
			t.Errorf("completion %s: %v", sh, err)
		}
	}
	// The bash script itself, in bash: it runs lanesctl (this test binary, through a
	// wrapper on PATH) for the candidates.
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	script, _, _ := call("completion", "bash")
	self, _ := os.Executable()
	dir := t.TempDir()
	wrapper := filepath.Join(dir, "lanesctl")
	if err := os.WriteFile(wrapper, []byte("#!/bin/sh\nLANESCTL_TEST_MAIN=1 exec "+self+" \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	line := "lanesctl --etcd " + etcd + " network show "
	// Without the bash-completion package, a stand-in for the one function of it that
	// the script calls; compopt works only inside a completion bash started.
	shim := `compopt() { :; }
declare -F _get_comp_words_by_ref >/dev/null || _get_comp_words_by_ref() {
  cur="${COMP_WORDS[COMP_CWORD]}"; prev="${COMP_WORDS[COMP_CWORD-1]}"; words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD; }
`
	cmd := exec.Command(bash, "-c", shim+script+`
COMP_LINE="`+line+`"; COMP_POINT=${#COMP_LINE}; COMP_WORDS=(lanesctl --etcd `+etcd+` network show ""); COMP_CWORD=5
__start_lanesctl; echo "${COMPREPLY[@]}"`)
	cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "blue green" {
		t.Errorf("bash completion: %q, %v", out, err)
	}
}
