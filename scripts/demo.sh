#!/usr/bin/env bash
# make demo: a three-host lanes lab on this machine, two tenant networks with the same
# CIDR, four VMs, and what an operator checks on each host. `demo.sh down` removes it.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-bin}
DIR=$(realpath -m "${LANES_DEMO_DIR:-.lab}")
NAME=${LANES_DEMO_NAME:-lanes-demo}

section() { printf '\n\033[1m==== %s\033[0m\n' "$*"; }
lab() { local c=$1; shift; "$BIN/lanes-lab" "$c" --dir "$DIR" --name "$NAME" "$@"; }
run() { local shown="$*"; printf '\033[2m$ %s\033[0m\n' "${shown/#ctl /lanesctl }"; "$@"; }
ctl() { ip netns exec "$NAME-h1" "$BIN/lanesctl" "$@"; }
# on HOST CMD...: run a command in a host's namespace against that host's OVS.
on() {
	local h=$1; shift
	ip netns exec "$NAME-$h" env OVS_RUNDIR="$DIR/$h/ovs" "$@"
}

if [ "${1:-up}" = down ]; then
	lab down
	echo "lab $NAME removed"
	exit 0
fi

section "Starting 3 hosts (namespaces $NAME-h1..h3: own ovsdb-server, ovs-vswitchd, lanesd; h1 runs etcd; h3 is also an L3 host)"
lab up --hosts 3 --l3 h3
for i in $(seq 1 100); do
	[ "$(ctl -o json host list 2>/dev/null | grep -c '"alive": true')" = 3 ] && break
	sleep 0.1
done
run ctl host list

section "Two tenant networks with the same CIDRs (IPv4 and IPv6), a security group"
run ctl network create net-a --cidr 10.0.0.0/24 --ipv6-cidr fd00:a::/64 --vni 100
run ctl network create net-b --cidr 10.0.0.0/24 --ipv6-cidr fd00:a::/64 --vni 200
ctl sg create demo >/dev/null
ctl sg rule add demo --direction ingress --protocol icmp >/dev/null
ctl sg rule add demo --direction ingress --protocol tcp --port 22 >/dev/null
ctl sg rule add demo --direction egress >/dev/null
ctl sg rule add demo --direction ingress --ethertype IPv6 --protocol icmpv6 >/dev/null
ctl sg rule add demo --direction egress --ethertype IPv6 >/dev/null
run ctl sg show demo

section "Four VMs: a1 (h1), a2 (h3) on net-a; b1 (h1), b2 (h2) on net-b; a1 and b1 share 10.0.0.11"
vm() { # name host network ip
	local out tap mac
	out=$(ctl -o json port create "$1" --host "$2" --network "$3" --ip "$4" --sg demo --wait)
	tap=$(sed -n 's/.*"tap": "\(.*\)".*/\1/p' <<<"$out")
	mac=$(sed -n 's/.*"mac": "\(.*\)".*/\1/p' <<<"$out")
	lab vm "$2" "$1" "$tap" "$mac" "$4/24" 1450 >/dev/null
	echo "$1: port ACTIVE on $2, tap $tap, mac $mac, ip $4 (netns $NAME-$2-$1)"
}
vm a1 h1 net-a 10.0.0.11
vm a2 h3 net-a 10.0.0.13
vm b1 h1 net-b 10.0.0.11
vm b2 h2 net-b 10.0.0.12
run ctl port list

section "Ping inside each network works, across networks it does not"
vmexec() { local v=$1 h=$2; shift 2; ip netns exec "$NAME-$h-$v" "$@"; }
pingvm() { # from host to
	if vmexec "$1" "$2" ping -c 2 -W 1 -q "$3" >/dev/null; then
		echo "$1 -> $3 ($4): reachable"
	else
		echo "$1 -> $3 ($4): unreachable"
	fi
}
pingvm a1 h1 10.0.0.13 "a2, net-a, across hosts h1 -> h3"
pingvm b1 h1 10.0.0.12 "b2, net-b, across hosts h1 -> h2"
pingvm a2 h3 10.0.0.11 "a1 (not b1), net-a"
pingvm a1 h1 10.0.0.12 "b2 is in net-b: isolated"
pingvm a2 h3 10.0.0.12 "b2 is in net-b: isolated"

section "IPv6: the VMs took their addresses by SLAAC from their own host's router advertisements"
v6() { ctl -o json port show "$1" | grep -o '"fd00:a::[0-9a-f:]*"' | tr -d '"'; }
slaac() { # vm host: wait until the guest holds its port's IPv6 address
	local a; a=$(v6 "$1")
	for _ in $(seq 100); do
		vmexec "$1" "$2" ip -6 -o addr show dev eth0 | grep -v tentative | grep -q " $a/64 " && { echo "$1: $a (SLAAC)"; return; }
		sleep 0.1
	done
	echo "$1: no SLAAC address yet"
}
slaac a1 h1; slaac a2 h3; slaac b1 h1; slaac b2 h2
pingvm a1 h1 "$(v6 a2)" "a2, net-a, across hosts h1 -> h3"
pingvm b1 h1 "$(v6 b2)" "b2, net-b, across hosts h1 -> h2"
pingvm a1 h1 "$(v6 b2)" "b2 is in net-b, same prefix: isolated"

section "A router: net-a reaches the outside ($NAME-out, 203.0.113.1) through SNAT, a1 is reached on its floating IP"
run ctl network create public --external --provider flat --physnet physnet1 --cidr 203.0.113.0/24 --gateway 203.0.113.1 --allocation-pool 203.0.113.10-203.0.113.99 >/dev/null
run ctl router create r1 >/dev/null
run ctl router add-interface r1 net-a >/dev/null
run ctl router set-gateway r1 public >/dev/null
run ctl fip create public --port a1
run ctl router show r1
for v in "a1 h1" "a2 h3"; do vmexec $v ip route replace default via 10.0.0.1; done
ROUTER=$(ctl -o json router show r1 | sed -n 's/^ *"id": "\(.*\)".*/\1/p' | head -1)
FIP=$(ctl -o json fip list | sed -n 's/.*"ip": "\(.*\)".*/\1/p' | head -1)
outping() { # from-namespace to what
	for i in $(seq 1 50); do
		if ip netns exec "$1" ping -c 1 -W 1 -q "$2" >/dev/null 2>&1; then echo "$3: reachable"; return; fi
		sleep 0.2
	done
	echo "$3: unreachable"
}
outping "$NAME-h3-a2" 203.0.113.1 "a2 -> outside 203.0.113.1 (SNAT to the router's external IP)"
outping "$NAME-out" "$FIP" "outside -> $FIP (a1's floating IP)"
# The router's namespace is mounted in the L3 host's lanesd's mount namespace.
inrouter() { nsenter -t "$(cat "$DIR/h3/lanesd.pid")" -m -n ip netns exec "qrouter-$ROUTER" "$@"; }
echo; printf '\033[2m$ ip netns exec qrouter-%s iptables -t nat -S\033[0m\n' "$ROUTER"; inrouter iptables -t nat -S | grep -- '-A lanes'
echo; printf '\033[2m$ ip netns exec qrouter-%s ip -br addr\033[0m\n' "$ROUTER"; inrouter ip -br addr

for h in h1 h2 h3; do
	section "Host $h: what an operator checks"
	echo "-- VM processes (the fake hypervisor, one per VM) and their taps"
	ps -eo pid,args | grep "[l]anes-vm start" | grep -- "--host-netns $NAME-$h " | sed 's/--state-dir [^ ]*//' || echo "(no VM on $h)"
	echo; printf '\033[2m$ brctl show\033[0m\n'; on "$h" brctl show
	echo; printf '\033[2m$ iptables -L -n -v | grep tap\033[0m\n'; on "$h" iptables -L -n -v | grep tap || true
	echo; printf '\033[2m$ ovs-vsctl show\033[0m\n'; on "$h" ovs-vsctl --db="unix:$DIR/$h/ovs/db.sock" show
	echo; printf '\033[2m$ ovs-ofctl dump-flows br-tun\033[0m\n'; on "$h" ovs-ofctl dump-flows br-tun --no-stats
	echo; printf '\033[2m$ lanesctl status\033[0m\n'; on "$h" "$BIN/lanesctl" --socket "$DIR/$h/lanesd.sock" status
done

section "A packet's path, explained: a1 -> a2 (tcp/22) and a1 -> b2's address"
on h1 "$BIN/lanesctl" --socket "$DIR/h1/lanesd.sock" trace --from-port a1 --dst-ip 10.0.0.13 --proto tcp --dst-port 22
echo
on h1 "$BIN/lanesctl" --socket "$DIR/h1/lanesd.sock" trace --from-port a1 --dst-ip 10.0.0.12 | grep -E '^ ?[12]\. |^=>' 

section "The lab keeps running"
cat <<EOF
shell in a VM:      ip netns exec $NAME-h1-a1 bash          (VMs: $NAME-h1-a1 $NAME-h3-a2 $NAME-h1-b1 $NAME-h2-b2)
shell on a host:    ip netns exec $NAME-h1 bash
  then:             export OVS_RUNDIR=$DIR/h1/ovs LANES_SOCKET=$DIR/h1/lanesd.sock PATH=\$PATH:$PWD/$BIN
                    ovs-ofctl dump-flows br-tun; ovs-vsctl --db=unix:\$OVS_RUNDIR/db.sock show; lanesctl status
lanesd logs:        $DIR/h*/lanesd.log
remove everything:  make demo-down
EOF
