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
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/store"
	"sigs.k8s.io/yaml"
)

// usage lists every command; it is printed for -h and for unknown commands.
const usage = `usage: lanesctl [--etcd URLS] [--etcd-cacert FILE] [--etcd-cert FILE] [--etcd-key FILE]
                [--etcd-insecure] [--etcd-dial-timeout 10s] [--socket PATH] [-o table|json|yaml] <command>

  Global flags go before or after the command words. lanesctl COMMAND --help shows a
  command's flags and an example.

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
              [--clear-allowed-address] [--ip IP]... [--mac MAC] [--port-security=true|false]
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

other:
  version                                  lanesctl's version and this host's lanesd's
  completion bash|zsh|fish                 shell completion (names from the store)
  help [COMMAND]

exit codes: 0 ok, 1 other error, 2 usage or invalid input, 3 not found,
  4 conflict (in use, already used, concurrent change), 5 store or lanesd unreachable
  (or TLS, permission refused)
`

// globals are the options every command accepts, before or after the command words.
type globals struct {
	etcd        string
	tls         store.ClientTLS
	insecure    bool
	dialTimeout time.Duration
	socket      string
	output      string
	out         io.Writer
}

func main() {
	err := run(os.Args[1:], os.Stdout)
	if err != nil {
		msg := oneLine(err)
		if errors.Is(err, store.ErrPermissionDenied) {
			msg += " (the etcd user of this client certificate, its CN, may not do this)"
		}
		fmt.Fprintln(os.Stderr, "lanesctl:", msg)
	}
	os.Exit(exitCode(err))
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

// globalFlags are the flags of globals; splitGlobals finds them anywhere on the line.
func globalFlags(g *globals) *flag.FlagSet {
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
	fs.DurationVar(&g.dialTimeout, "etcd-dial-timeout", 10*time.Second, "how long to wait for etcd to answer")
	fs.StringVar(&g.socket, "socket", sock, "lanesd's local socket (default $LANES_SOCKET)")
	fs.StringVar(&g.output, "o", "table", "output: table, json or yaml")
	fs.StringVar(&g.output, "output", "table", "output: table, json or yaml")
	return fs
}

// splitGlobals takes the global flags (and their values) out of args, wherever they are,
// so that "-o json" may follow the command words.
func splitGlobals(fs *flag.FlagSet, args []string) (globalArgs, rest []string, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return globalArgs, append(rest, args[i:]...), nil
		}
		if len(a) < 2 || a[0] != '-' {
			rest = append(rest, a)
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := fs.Lookup(name)
		if f == nil {
			rest = append(rest, a)
			continue
		}
		globalArgs = append(globalArgs, a)
		if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); hasValue || ok && bf.IsBoolFlag() {
			continue
		}
		if i+1 == len(args) {
			return nil, nil, usagef("flag needs an argument: %s", a)
		}
		i++
		globalArgs = append(globalArgs, args[i])
	}
	return globalArgs, rest, nil
}

func run(args []string, out io.Writer) error {
	if len(args) > 0 && args[0] == "__complete" {
		completeLine(args[1:], func(s string) { fmt.Fprintln(out, s) })
		return nil
	}
	g := &globals{out: out}
	fs := globalFlags(g)
	gargs, rest, err := splitGlobals(fs, args)
	if err != nil {
		return err
	}
	if err := fs.Parse(gargs); err != nil {
		return &usageError{err}
	}
	switch g.output {
	case "table", "json", "yaml":
	default:
		return usagef("-o %q: must be table, json or yaml", g.output)
	}
	if len(rest) == 0 {
		fmt.Fprint(out, usage)
		return usagef("no command")
	}
	if rest[0] == "help" || isHelp(rest[0]) {
		rest = rest[1:]
		if len(rest) == 0 {
			fmt.Fprint(out, usage)
			return nil
		}
		rest = append(rest, "--help")
	}
	cmd, cargs := find(rest)
	c := &cli{globals: g, ctx: context.Background()}
	if cmd == nil {
		help := slices.ContainsFunc(rest, isHelp)
		for n := min(2, len(rest)); n > 0; n-- {
			prefix := strings.Join(rest[:n], " ")
			if len(group(prefix)) == 0 {
				continue
			}
			if help {
				fmt.Fprint(out, groupHelp(prefix))
				return nil
			}
			if n == len(rest) || strings.HasPrefix(rest[n], "-") {
				return usagef("%s: missing subcommand (see lanesctl %s --help)", prefix, prefix)
			}
			break
		}
		words := rest
		for i, w := range rest {
			if strings.HasPrefix(w, "-") {
				words = rest[:i]
				break
			}
		}
		if len(words) > 3 {
			words = words[:3]
		}
		hint := ""
		if s := suggest(words); s != "" {
			hint = fmt.Sprintf("; did you mean %q?", s)
		}
		return usagef("unknown command %q%s (see lanesctl help)", strings.Join(words, " "), hint)
	}
	if slices.ContainsFunc(cargs, isHelp) {
		fmt.Fprint(out, commandHelp(c, cmd))
		return nil
	}
	if cmd.store {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		st, err := g.openStore(ctx)
		if err != nil {
			return err
		}
		defer st.Close()
		c.st, c.ctx = st, ctx
	}
	return cmd.run(c, cargs)
}

// openStore connects to etcd; a failure to get an answer is "unreachable" (exit 5),
// refused input such as plain http to a remote etcd stays a usage error.
func (g *globals) openStore(ctx context.Context) (*store.Store, error) {
	dialCtx, cancel := context.WithTimeout(ctx, g.dialTimeout)
	defer cancel()
	st, err := store.Open(dialCtx, strings.Split(g.etcd, ","), store.WithTLS(g.tls), store.AllowInsecure(g.insecure))
	if err != nil {
		if errors.Is(err, api.ErrInvalid) {
			return nil, &usageError{err}
		}
		return nil, &unreachableError{err}
	}
	return st, nil
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
			if errors.Is(err, flag.ErrHelp) {
				return nil, &helpRequested{fs}
			}
			return nil, &usageError{fmt.Errorf("%s: %w", fs.Name(), err)}
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != len(positional) {
		if len(positional) == 0 {
			return nil, usagef("%s: unexpected argument %q", fs.Name(), pos[0])
		}
		return nil, usagef("%s: want %s", fs.Name(), strings.Join(positional, " "))
	}
	return pos, nil
}

// list is a repeatable string flag.
type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(s string) error { *l = append(*l, s); return nil }

// structured reports whether -o asks for JSON or YAML rather than a table.
func (g *globals) structured() bool { return g.output != "table" }

// emit prints v as JSON or YAML with -o json|yaml, or calls table otherwise. YAML is
// made from the JSON, so both carry the same field names and parse into the same
// objects.
func (g *globals) emit(v any, table func(w *tabwriter.Writer)) error {
	switch g.output {
	case "json":
		enc := json.NewEncoder(g.out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		j, err := json.Marshal(v)
		if err != nil {
			return err
		}
		y, err := yaml.JSONToYAML(j)
		if err != nil {
			return err
		}
		_, err = g.out.Write(y)
		return err
	}
	w := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
	table(w)
	return w.Flush()
}
