// Command lanesctl is the operator's CLI: networks, ports, security groups and hosts in
// the store, and the local lanesd's status, flows and traces.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lanes-net/lanes/store"
)

// usage lists every command; it is printed for -h and for unknown commands.
const usage = `usage: lanesctl [--etcd URLS] [--etcd-cacert FILE] [--etcd-cert FILE] [--etcd-key FILE]
                [--etcd-insecure] [--socket PATH] [-o json] <command>

  --etcd (default $LANES_ETCD, http://127.0.0.1:2379); TLS files default to
  $LANES_ETCD_CACERT, $LANES_ETCD_CERT, $LANES_ETCD_KEY; the certificate's CN is the
  etcd user. Plain http to a non-loopback etcd needs --etcd-insecure.

store (any host):
  network create NAME --cidr CIDR [--vni N] [--mtu N] [--underlay-mtu N] [DHCP]
              (the first network also creates the security group default)
  network update NET [DHCP] [--dhcp]
              DHCP: [--gateway IP] [--dns IP]... [--domain NAME] [--search NAME]...
                    [--route CIDR,NEXTHOP]... [--lease 24h] [--no-dhcp]
              (update changes only the flags given; an empty value clears: --dns "")
  network list | show NET | delete NET
  port create NAME --network NET --host HOST [--mac MAC] [--ip IP]... [--sg SG]... [--no-sg]
              [--allowed-address IP[,MAC]]... [--no-port-security] [--wait] [--timeout 30s]
              [SEED]
              (without --sg a port gets the group named default)
  port seed PORT [SEED]
              SEED: [--user-data FILE] [--ssh-key FILE]... [--seed OUT.img]
              (a cloud-init NoCloud disk for the guest: see docs/operators.md)
  port list [--network NET] [--host HOST] | show PORT | delete PORT
  port update PORT [--host HOST] [--sg SG]... [--no-sg] [--allowed-address IP[,MAC]]...
              [--port-security=true|false]
  sg create NAME [--default-rules] | list | show SG | delete SG
  sg rule add SG --direction ingress|egress [--ethertype IPv4|IPv6] [--protocol P]
              [--port N[-M]] [--icmp-type T [--icmp-code C]] [--remote-cidr CIDR | --remote-group SG]
  sg rule delete SG RULE_ID
  host list | delete HOST [--force]
              (a host whose agent is down keeps its tunnels; delete removes them)

store access (with the root certificate of pki init):
  store init [--host NAME]... [--operator NAME]... [--reader NAME]...
              (roles lanes-host-NAME, lanes-operator, lanes-reader; users without
              passwords; turns on etcd authentication; safe to run again)
  store users | remove-user NAME

certificates (no store needed; --dir defaults to $LANES_PKI_DIR or /etc/lanes/pki):
  pki init [--dir DIR] [--san ADDR]...     CA, etcd server certificate, root certificate
  pki issue-host NAME [--dir DIR] [--days N] [--force]
  pki issue-operator NAME [--dir DIR] [--days N] [--force]
  pki issue-reader NAME [--dir DIR] [--days N] [--force]
  pki issue-server NAME --san ADDR... [--dir DIR] [--days N] [--force]

` + usageL3 + `
this host's lanesd (root, through --socket):
  status
  flows br-tun|br-int [--table NAME|NUMBER] [--port PORT] [--network NET]
  trace --from-port PORT --dst-ip IP [--proto icmp|tcp|udp] [--dst-port N]
  trace --from-port PORT --dhcp
`

// globals are the options every command accepts before the command words.
type globals struct {
	etcd     string
	tls      store.ClientTLS
	insecure bool
	socket   string
	output   string
	out      io.Writer
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		msg := oneLine(err)
		if errors.Is(err, store.ErrPermissionDenied) {
			msg += " (the etcd user of this client certificate, its CN, may not do this)"
		}
		fmt.Fprintln(os.Stderr, "lanesctl:", msg)
		os.Exit(1)
	}
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

func run(args []string, out io.Writer) error {
	g := &globals{out: out}
	fs := flag.NewFlagSet("lanesctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	etcd := os.Getenv("LANES_ETCD")
	if etcd == "" {
		etcd = "http://127.0.0.1:2379"
	}
	sock := os.Getenv("LANES_SOCKET")
	if sock == "" {
		sock = "/run/lanes/lanesd.sock"
	}
	fs.StringVar(&g.etcd, "etcd", etcd, "etcd client URLs, comma-separated (default $LANES_ETCD)")
	fs.StringVar(&g.tls.CACert, "etcd-cacert", os.Getenv("LANES_ETCD_CACERT"), "CA bundle of etcd's server certificates")
	fs.StringVar(&g.tls.Cert, "etcd-cert", os.Getenv("LANES_ETCD_CERT"), "client certificate; its CN is the etcd user")
	fs.StringVar(&g.tls.Key, "etcd-key", os.Getenv("LANES_ETCD_KEY"), "key of --etcd-cert")
	fs.BoolVar(&g.insecure, "etcd-insecure", false, "accept plain http to a non-loopback etcd")
	fs.StringVar(&g.socket, "socket", sock, "lanesd's local socket (default $LANES_SOCKET)")
	fs.StringVar(&g.output, "o", "table", "output: table or json")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(out, usage)
			return nil
		}
		return err
	}
	words := fs.Args()
	if len(words) == 0 {
		fmt.Fprint(out, usage)
		return errors.New("no command")
	}
	if g.output != "table" && g.output != "json" {
		return fmt.Errorf("-o %q: must be table or json", g.output)
	}
	cmd, rest := words[0], words[1:]
	switch cmd {
	case "network", "port", "sg", "host", "store", "router", "fip":
		return g.storeCommand(cmd, rest)
	case "pki":
		return g.pki(rest)
	case "status":
		return g.status(rest)
	case "flows":
		return g.flows(rest)
	case "trace":
		return g.trace(rest)
	case "help":
		fmt.Fprint(out, usage)
		return nil
	}
	return fmt.Errorf("unknown command %q (see lanesctl help)", cmd)
}

func (g *globals) storeCommand(noun string, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%s: missing subcommand (see lanesctl help)", noun)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dialCtx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	defer dcancel()
	st, err := store.Open(dialCtx, strings.Split(g.etcd, ","), store.WithTLS(g.tls), store.AllowInsecure(g.insecure))
	if err != nil {
		return err
	}
	defer st.Close()
	c := &cli{globals: g, st: st, ctx: ctx}
	verb, rest := args[0], args[1:]
	switch noun + " " + verb {
	case "network create":
		return c.networkCreate(rest)
	case "network list":
		return c.networkList(rest)
	case "network show":
		return c.networkShow(rest)
	case "network delete":
		return c.networkDelete(rest)
	case "network update":
		return c.networkUpdate(rest)
	case "port create":
		return c.portCreate(rest)
	case "port list":
		return c.portList(rest)
	case "port show":
		return c.portShow(rest)
	case "port update":
		return c.portUpdate(rest)
	case "port delete":
		return c.portDelete(rest)
	case "port seed":
		return c.portSeed(rest)
	case "sg create":
		return c.sgCreate(rest)
	case "sg list":
		return c.sgList(rest)
	case "sg show":
		return c.sgShow(rest)
	case "sg delete":
		return c.sgDelete(rest)
	case "sg rule":
		return c.sgRule(rest)
	case "host list":
		return c.hostList(rest)
	case "host delete":
		return c.hostDelete(rest)
	case "store init":
		return c.storeInit(rest)
	case "store users":
		return c.storeUsers(rest)
	case "store remove-user":
		return c.storeRemoveUser(rest)
	}
	if ok, err := c.l3Command(noun, verb, rest); ok { // router.go
		return err
	}
	return fmt.Errorf("unknown command %q (see lanesctl help)", noun+" "+verb)
}

// cli runs store commands.
type cli struct {
	*globals
	st  *store.Store
	ctx context.Context
}

// parse parses flags and positional arguments in any order and checks the number of
// positional arguments.
func parse(fs *flag.FlagSet, args []string, positional ...string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, fmt.Errorf("%s: %w", fs.Name(), err)
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != len(positional) {
		if len(positional) == 0 {
			return nil, fmt.Errorf("%s: unexpected argument %q", fs.Name(), pos[0])
		}
		return nil, fmt.Errorf("%s: want %s", fs.Name(), strings.Join(positional, " "))
	}
	return pos, nil
}

// list is a repeatable string flag.
type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(s string) error { *l = append(*l, s); return nil }

// emit prints v as JSON with -o json, or calls table otherwise.
func (g *globals) emit(v any, table func(w *tabwriter.Writer)) error {
	if g.output == "json" {
		enc := json.NewEncoder(g.out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	w := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
	table(w)
	return w.Flush()
}
