#!/usr/bin/env bash
# Installs the system packages lanes' tests and demo need, only those that are missing.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have ovs-vswitchd || need+=(openvswitch-switch)
have iptables     || need+=(iptables)
have ipset        || need+=(ipset)
have ip           || need+=(iproute2)
have brctl        || need+=(bridge-utils)
have conntrack    || need+=(conntrack)
have ping         || need+=(iputils-ping)
have tcpdump      || need+=(tcpdump)
have nc           || need+=(netcat-openbsd)
have ps           || need+=(procps)
have busybox      || need+=(busybox)    # udhcpc: the DHCP client of the fake VMs
have dhclient     || need+=(isc-dhcp-client) # dhclient -6: the DHCPv6 client of the IPv6 tests
have mcopy        || need+=(mtools)     # reads the NoCloud seeds lanesctl writes
have fsck.fat     || need+=(dosfstools) # checks them
/usr/bin/python3 -c "import cloudinit" 2>/dev/null || need+=(cloud-init) # reads them as a guest would
have sysctl       || need+=(procps)
if [ "${#need[@]}" -gt 0 ]; then
	echo "installing: ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The Debian package starts an OVS in the root namespace; lanes never uses it (each host of
# the lab and of the tests runs its own), so it is left alone.
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	echo "note: add /usr/local/go/bin to PATH" >&2
fi
