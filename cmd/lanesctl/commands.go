package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/store"
	"github.com/spf13/pflag"
)

// command is one leaf of lanesctl's command tree. A new command is one entry in
// commands: its words, its synopsis, and a run function that defines its own flags
// and then calls parse (so that the cobra command built from the entry shows,
// parses and completes exactly those flags; see tree.go).
type command struct {
	path     string // the command words, e.g. "sg rule add"
	synopsis string // what follows the words in the usage line
	short    string // one line for the parent's command list
	long     string // more than short says, when there is more to say
	example  string // one or more lines, each a full lanesctl command
	// store: the command needs the etcd store (run gets a *cli with st set).
	store bool
	run   func(c *cli, args []string) error
	// complete names the kind of object each positional argument is, for shell
	// completion: network, port, sg, host, router, or "" for none.
	complete []string
}

var commands = []command{
	{path: "network create", synopsis: "NAME (--cidr CIDR | --ipv6-cidr CIDR) [flags]", store: true,
		short: "Create a network",
		long: "Create a network; the VNI and MTU are allocated unless given. The first network also creates the security group default.\n\n" +
			"A network has an IPv4 subnet (--cidr), an IPv6 subnet (--ipv6-cidr) or both. The IPv6 address mode decides how guests get\n" +
			"their address: slaac (the EUI-64 of the port's MAC, from router advertisements), dhcpv6-stateful (an address the\n" +
			"store allocates, handed out by DHCPv6) or dhcpv6-stateless (SLAAC, other options by DHCPv6).",
		example: "lanesctl network create blue --cidr 10.0.0.0/24 --gateway 10.0.0.1 --dns 10.0.0.53\n" +
			"lanesctl network create dual --cidr 10.1.0.0/24 --ipv6-cidr 2001:db8:1::/64 --ipv6-gateway 2001:db8:1::1\n" +
			"lanesctl network create v6 --ipv6-cidr 2001:db8:2::/64 --ipv6-address-mode dhcpv6-stateful --ipv6-dns 2001:db8::53\n" +
			"lanesctl network create ext --external --provider flat --physnet public --cidr 203.0.113.0/24 --gateway 203.0.113.1 --allocation-pool 203.0.113.10-203.0.113.99",
		run: (*cli).networkCreate},
	{path: "network update", synopsis: "NETWORK [flags]", store: true, complete: []string{"network"},
		short: "Change a network's gateway, DHCP options or IPv6 subnet",
		long: "Change a network's gateway and DHCP options, or give it an IPv6 subnet; only the flags given change, an empty value\n" +
			"clears (--dns \"\"). The name, VNI, IPv4 CIDR and MTU of a network do not change: create another network.",
		example: "lanesctl network update blue --dns 10.0.0.53 --lease 12h\n" +
			"lanesctl network update blue --dns \"\" --no-dhcp\n" +
			"lanesctl network update blue --ipv6-cidr 2001:db8:1::/64 --ipv6-gateway 2001:db8:1::1",
		run: (*cli).networkUpdate},
	{path: "network list", store: true, short: "List networks",
		example: "lanesctl network list\nlanesctl network list -o yaml", run: (*cli).networkList},
	{path: "network show", synopsis: "NETWORK", store: true, complete: []string{"network"},
		short: "Show one network (by name or ID)", example: "lanesctl network show blue -o json", run: (*cli).networkShow},
	{path: "network delete", synopsis: "NETWORK", store: true, complete: []string{"network"},
		short: "Delete a network; refused while ports are attached", example: "lanesctl network delete blue", run: (*cli).networkDelete},

	{path: "port create", synopsis: "NAME --network NET --host HOST [flags]", store: true,
		short: "Create a port for a VM",
		long: "Create a port for a VM; without --sg it gets the group named default. Prints the tap and the qemu options, and with\n" +
			"--user-data or --ssh-key writes a cloud-init NoCloud disk for the guest. --ip takes at most one IPv4 and one IPv6\n" +
			"address; without --ip the port gets one address per subnet of its network.",
		example: "lanesctl port create vm1 --network blue --host cmp1 --sg web --wait --ssh-key ~/.ssh/id_ed25519.pub\n" +
			"lanesctl port create vm2 --network dual --host cmp2 --ip 10.1.0.20 --ip 2001:db8:1::20",
		run: (*cli).portCreate},
	{path: "port list", synopsis: "[--network NET] [--host HOST]", store: true,
		short: "List ports with their reported status", example: "lanesctl port list --network blue --host cmp1", run: (*cli).portList},
	{path: "port show", synopsis: "PORT", store: true, complete: []string{"port"},
		short: "Show one port (by name or ID)", example: "lanesctl port show vm1 -o yaml", run: (*cli).portShow},
	{path: "port update", synopsis: "PORT [flags]", store: true, complete: []string{"port"},
		short: "Change a port's host, groups, address pairs, fixed IPs, MAC or port security",
		long:  "Change a port's host, security groups, allowed address pairs, fixed IPs, MAC or port security; only the flags given change.",
		example: "lanesctl port update vm1 --sg web --sg ssh\n" +
			"lanesctl port update vm1 --ip 10.0.0.50 --mac fa:16:3e:00:00:50\n" +
			"lanesctl port update vm1 --clear-allowed-address",
		run: (*cli).portUpdate},
	{path: "port delete", synopsis: "PORT", store: true, complete: []string{"port"},
		short: "Delete a port", example: "lanesctl port delete vm1", run: (*cli).portDelete},
	{path: "port seed", synopsis: "PORT [--user-data FILE] [--ssh-key FILE]... [--seed OUT.img]", store: true, complete: []string{"port"},
		short:   "Write a cloud-init NoCloud disk for the port's guest",
		example: "lanesctl port seed vm1 --ssh-key ~/.ssh/id_ed25519.pub --seed /var/lib/vms/vm1-seed.img", run: (*cli).portSeed},

	{path: "sg create", synopsis: "NAME [--default-rules]", store: true,
		short:   "Create a security group (empty: it drops everything)",
		example: "lanesctl sg create web\nlanesctl sg create app --default-rules", run: (*cli).sgCreate},
	{path: "sg list", store: true, short: "List security groups and their rules", example: "lanesctl sg list", run: (*cli).sgList},
	{path: "sg show", synopsis: "SG", store: true, complete: []string{"sg"},
		short: "Show one security group", example: "lanesctl sg show web", run: (*cli).sgShow},
	{path: "sg delete", synopsis: "SG", store: true, complete: []string{"sg"},
		short: "Delete a security group; refused while a port or another group's rule uses it", example: "lanesctl sg delete web", run: (*cli).sgDelete},
	{path: "sg rule add", synopsis: "SG --direction ingress|egress [flags]", store: true, complete: []string{"sg"},
		short: "Add a rule to a security group",
		example: "lanesctl sg rule add web --direction ingress --protocol tcp --port 22\n" +
			"lanesctl sg rule add web --direction ingress --protocol icmp --icmp-type 8 --remote-cidr 192.0.2.0/24\n" +
			"lanesctl sg rule add web --direction ingress --ethertype IPv6 --protocol tcp --port 443 --remote-group web",
		run: (*cli).sgRuleAdd},
	{path: "sg rule delete", synopsis: "SG RULE_ID", store: true, complete: []string{"sg"},
		short: "Delete a rule of a security group", example: "lanesctl sg rule delete web 7c0e1f2a-...", run: (*cli).sgRuleDelete},

	{path: "host list", store: true, short: "List hosts and whether their agent is up", example: "lanesctl host list", run: (*cli).hostList},
	{path: "host delete", synopsis: "HOST [--force]", store: true, complete: []string{"host"},
		short:   "Delete a host and its tunnels; refused while ports are bound to it unless --force",
		long:    "Delete a host and its tunnels. A host whose agent is down keeps its tunnels until it is deleted; while ports are bound\nto it the delete is refused unless --force.",
		example: "lanesctl host delete cmp3", run: (*cli).hostDelete},

	{path: "router create", synopsis: "NAME [--host L3HOST]", store: true, short: "Create a router, scheduled to an L3 host",
		example: "lanesctl router create r1 --host l3a", run: l3Run("router create")},
	{path: "router list", store: true, short: "List routers and where they run", example: "lanesctl router list", run: l3Run("router list")},
	{path: "router show", synopsis: "ROUTER", store: true, complete: []string{"router"},
		short: "Show a router", example: "lanesctl router show r1", run: l3Run("router show")},
	{path: "router delete", synopsis: "ROUTER", store: true, complete: []string{"router"},
		short: "Delete a router (its interfaces and gateway first)", example: "lanesctl router delete r1", run: l3Run("router delete")},
	{path: "router add-interface", synopsis: "ROUTER NETWORK", store: true, complete: []string{"router", "network"},
		short:   "Attach a network to a router; the router takes the network's gateway address",
		example: "lanesctl router add-interface r1 blue", run: l3Run("router add-interface")},
	{path: "router remove-interface", synopsis: "ROUTER NETWORK", store: true, complete: []string{"router", "network"},
		short: "Detach a network from a router", example: "lanesctl router remove-interface r1 blue", run: l3Run("router remove-interface")},
	{path: "router set-gateway", synopsis: "ROUTER EXTERNAL-NETWORK [--no-snat]", store: true, complete: []string{"router", "network"},
		short:   "Give a router its external gateway (SNAT unless --no-snat)",
		example: "lanesctl router set-gateway r1 ext", run: l3Run("router set-gateway")},
	{path: "router clear-gateway", synopsis: "ROUTER", store: true, complete: []string{"router"},
		short: "Remove a router's external gateway", example: "lanesctl router clear-gateway r1", run: l3Run("router clear-gateway")},
	{path: "fip create", synopsis: "EXTERNAL-NETWORK [--port PORT [--fixed-ip IP]]", store: true, complete: []string{"network"},
		short:   "Allocate a floating IP from an external network's pool, optionally for a port",
		example: "lanesctl fip create ext --port vm1", run: l3Run("fip create")},
	{path: "fip list", store: true, short: "List floating IPs", example: "lanesctl fip list", run: l3Run("fip list")},
	{path: "fip delete", synopsis: "FIP", store: true, short: "Release a floating IP (ID or address)",
		example: "lanesctl fip delete 203.0.113.10", run: l3Run("fip delete")},
	{path: "fip associate", synopsis: "FIP PORT [--fixed-ip IP]", store: true, complete: []string{"", "port"},
		short: "Point a floating IP at a port's fixed IP", example: "lanesctl fip associate 203.0.113.10 vm1", run: l3Run("fip associate")},
	{path: "fip disassociate", synopsis: "FIP", store: true, short: "Detach a floating IP from its port",
		example: "lanesctl fip disassociate 203.0.113.10", run: l3Run("fip disassociate")},

	{path: "store init", synopsis: "[--host NAME]... [--operator NAME]... [--reader NAME]...", store: true,
		short: "Create lanes' etcd roles and users and turn on etcd authentication",
		long: "Create lanes' etcd roles (lanes-host-NAME, lanes-operator, lanes-reader) and users without passwords, and turn on etcd\n" +
			"authentication. Run it with the root certificate of pki init; it is safe to run again.",
		example: "lanesctl store init --host cmp1 --host cmp2 --operator alice --reader grafana --etcd https://10.0.0.2:2379 --etcd-cacert /etc/lanes/pki/ca.crt --etcd-cert /etc/lanes/pki/root.crt --etcd-key /etc/lanes/pki/root.key",
		run:     (*cli).storeInit},
	{path: "store users", store: true, short: "List etcd users and their roles", example: "lanesctl store users", run: (*cli).storeUsers},
	{path: "store remove-user", synopsis: "NAME", store: true, short: "Remove an etcd user", example: "lanesctl store remove-user alice", run: (*cli).storeRemoveUser},

	{path: "pki init", synopsis: "[--dir DIR] [--san ADDR]...", short: "Create the CA, etcd's server certificate and the root certificate",
		long:    "Create the CA, etcd's server certificate and the root certificate in --dir (default $LANES_PKI_DIR or /etc/lanes/pki).\nNo store is needed.",
		example: "lanesctl pki init --dir /etc/lanes/pki --san 10.0.0.2 --san etcd.example.net", run: pkiVerb("init")},
	{path: "pki issue-host", synopsis: "NAME [--dir DIR] [--days N] [--force]", short: "Issue a host's etcd client certificate",
		example: "lanesctl pki issue-host cmp1", run: pkiVerb("issue-host")},
	{path: "pki issue-operator", synopsis: "NAME [--dir DIR] [--days N] [--force]", short: "Issue an operator's certificate",
		example: "lanesctl pki issue-operator alice --days 90", run: pkiVerb("issue-operator")},
	{path: "pki issue-reader", synopsis: "NAME [--dir DIR] [--days N] [--force]", short: "Issue a read-only certificate",
		example: "lanesctl pki issue-reader grafana", run: pkiVerb("issue-reader")},
	{path: "pki issue-server", synopsis: "NAME --san ADDR... [--dir DIR] [--days N] [--force]", short: "Issue an etcd member's server certificate",
		example: "lanesctl pki issue-server etcd2 --san 10.0.0.3", run: pkiVerb("issue-server")},

	{path: "status", short: "This host's lanesd: store and lease, bridges, networks, ports, tunnels, warnings",
		long:    "This host's lanesd (root, through --socket): store and lease, bridges, networks, ports, tunnels, warnings and the last reconcile.",
		example: "lanesctl status\nlanesctl status -o json", run: func(c *cli, args []string) error { return c.status(args) }},
	{path: "flows", synopsis: "br-tun|br-int [--table NAME|NUMBER] [--port PORT] [--network NET]",
		short: "The flows lanesd keeps on a bridge, with their owners", example: "lanesctl flows br-tun --table FLOOD_TO_TUN\nlanesctl flows br-int --port vm1",
		run: func(c *cli, args []string) error { return c.flows(args) }},
	{path: "trace", synopsis: "--from-port PORT (--dst-ip IP [--proto icmp|tcp|udp] [--dst-port N] | --dhcp)",
		short: "Trace a packet from a local port through both bridges, explained",
		example: "lanesctl trace --from-port vm1 --dst-ip 10.0.0.7 --proto tcp --dst-port 22\n" +
			"lanesctl trace --from-port vm1 --dst-ip fd00:1::f816:3eff:fe00:7\n" +
			"lanesctl trace --from-port vm1 --dhcp",
		run: func(c *cli, args []string) error { return c.trace(args) }},

	{path: "version", short: "The versions of lanesctl and, when its socket answers, of this host's lanesd",
		example: "lanesctl version\nlanesctl version -o json", run: func(c *cli, args []string) error { return c.version(args) }},
}

// groups are the words that only lead to other commands.
var groups = map[string]string{
	"network": "Networks: their subnets, VNI, MTU and DHCP",
	"port":    "Ports of VMs: their addresses, groups and cloud-init seeds",
	"sg":      "Security groups",
	"sg rule": "Rules of a security group",
	"host":    "Hosts that run lanesd",
	"router":  "Routers, on the L3 hosts (lanesd --l3)",
	"fip":     "Floating IPs of external networks",
	"store":   "etcd users and roles of lanes (with the root certificate of pki init)",
	"pki":     "Certificates for etcd and its clients (no store needed)",
}

func pkiVerb(verb string) func(c *cli, args []string) error {
	return func(c *cli, args []string) error { return c.pki(verb, args) }
}

// Exit codes, by class of failure; docs/operators.md lists them.
const (
	exitOK          = 0
	exitError       = 1 // any other error: in use, already used, concurrent change, refused by etcd's permissions
	exitUsage       = 2 // usage errors and invalid input
	exitNotFound    = 3 // the named object does not exist
	exitUnreachable = 4 // store or lanesd unreachable (also a failed TLS handshake)
)

// usageError marks a mistake on the command line (exit 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return &usageError{fmt.Errorf(format, a...)} }

// unreachableError marks a store or lanesd that did not answer (exit 4).
type unreachableError struct{ err error }

func (e *unreachableError) Error() string { return e.err.Error() }
func (e *unreachableError) Unwrap() error { return e.err }

// errNotFound is what lanesd's API answers with 404.
var errNotFound = errors.New("not found")

// exitCode maps an error to its class in the table above. Conflicts (in use, a name
// already used) are checked before invalid input: the input was fine, the store's
// state refused it, which a retry or another name may fix.
func exitCode(err error) int {
	var ue *usageError
	var unr *unreachableError
	var fe *api.FieldError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		return exitUsage
	case errors.Is(err, store.ErrPermissionDenied), errors.Is(err, store.ErrNotRoot):
		return exitError
	case errors.As(err, &unr), errors.Is(err, store.ErrTLS),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, context.DeadlineExceeded):
		return exitUnreachable
	case errors.Is(err, store.ErrNotFound), errors.Is(err, errNotFound):
		return exitNotFound
	case errors.Is(err, store.ErrInUse), errors.Is(err, store.ErrConflict),
		errors.As(err, &fe) && strings.HasPrefix(fe.Reason, "already used"):
		return exitError
	case errors.Is(err, api.ErrInvalid):
		return exitUsage
	}
	// Only a network operation's error: syscall.Errno satisfies net.Error too.
	var ne *net.OpError
	if errors.As(err, &ne) {
		return exitUnreachable
	}
	return exitError
}

// definition is what parse returns while the tree is built: the command's flag set
// and positional arguments, so that cobra shows, parses and checks exactly those.
type definition struct {
	fs         *pflag.FlagSet
	positional []string
}

func (d *definition) Error() string { return "the definition of " + d.fs.Name() }

// l3Run runs one of the router and fip commands of router.go.
func l3Run(path string) func(c *cli, args []string) error {
	noun, verb, _ := strings.Cut(path, " ")
	return func(c *cli, args []string) error {
		_, err := c.l3Command(noun, verb, args)
		return err
	}
}
