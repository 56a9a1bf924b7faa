#!/usr/bin/env bash
# Prepares what `make test-qemu` needs: qemu-system-x86_64 (installed with apt only if
# missing), a Debian guest kernel and a busybox initramfs, built into a cache directory
# (default .cache/qemu in the repo; LANES_QEMU_DIR overrides it). Idempotent: a cache
# built by this version of the script is reused without touching apt.
#
# The guest's /init loads the virtio-net modules, configures eth0 from the kernel
# command line and talks to the test over the serial console:
#   lanes.ip=10.0.0.5/24  address of eth0 (lanes.ip=dhcp: ask DHCP, print LANES-DHCP)
#   lanes.ping=10.0.0.2   whom to ping
#   lanes.mtu=1450        MTU of eth0 (optional)   lanes.tries=60       pings before giving up
#   lanes.hold=30         seconds to wait for an echo request from the peer before powering off
# and prints LANES-PING-OK / LANES-PING-FAIL, then LANES-ECHOED / LANES-NOT-ECHOED.
# LANES_KERNEL=linux-image-X-amd64 picks another kernel package than linux-image-amd64's.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${LANES_QEMU_DIR:-$repo/.cache/qemu}
self_sum=$(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1)

need=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
if [ "${#need[@]}" -gt 0 ]; then
	echo "installing: ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# No recommends: the test needs neither firmware blobs beyond SeaBIOS nor a GUI.
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ -s "$cache/vmlinuz" ] && [ -s "$cache/initrd.img" ] && [ "$(cat "$cache/stamp" 2>/dev/null)" = "$self_sum" ]; then
	echo "qemu guest cached in $cache ($(cat "$cache/kernel-package"))"
	exit 0
fi

mkdir -p "$cache/debs"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The kernel package: the one the linux-image-amd64 meta package points at, unless a
# cached download or LANES_KERNEL says otherwise.
kpkg=${LANES_KERNEL:-}
if [ -z "$kpkg" ] && [ -s "$cache/kernel-package" ]; then
	kpkg=$(cat "$cache/kernel-package")
fi
if [ -z "$kpkg" ]; then
	kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
fi
if [ -z "$kpkg" ]; then
	echo "qemu-deps: no linux-image-*-amd64 package known to apt (run apt-get update?)" >&2
	exit 1
fi

fetch() { # package -> path of its .deb in the cache
	local deb
	deb=$(ls "$cache/debs/$1"_*.deb 2>/dev/null | head -n1 || true)
	if [ -z "$deb" ]; then
		# apt-get download writes into the current directory; _apt cannot write into root's
		# cache, so the download runs unsandboxed (a harmless warning).
		(cd "$cache/debs" && apt-get download -qq "$1" 2>&1 | grep -v 'unsandboxed' >&2 || true)
		deb=$(ls "$cache/debs/$1"_*.deb 2>/dev/null | head -n1 || true)
		[ -n "$deb" ] || { echo "qemu-deps: apt-get download $1 failed" >&2; exit 1; }
	fi
	echo "$deb"
}

echo "building qemu guest in $cache from $kpkg"
dpkg-deb -x "$(fetch "$kpkg")" "$work/kernel"
dpkg-deb -x "$(fetch busybox-static)" "$work/busybox"
kver=${kpkg#linux-image-}
moddir=$work/kernel/lib/modules/$kver
[ -d "$moddir" ] || { echo "qemu-deps: $kpkg has no lib/modules/$kver" >&2; exit 1; }

root=$work/root
mkdir -p "$root"/{bin,dev,proc,sys,tmp,lib/modules}
cp "$work/busybox/bin/busybox" "$root/bin/busybox"

# Modules in load order (dependencies first), resolved with modinfo from the package
# itself; drivers built into the kernel are simply absent and skipped.
order=()
resolve() {
	local m=$1 f dep
	for dep in "${order[@]}"; do [ "$dep" = "$m" ] && return 0; done
	f=$(find "$moddir" -name "$m.ko*" -print -quit)
	if [ -z "$f" ]; then
		if grep -q "/$m.ko\$" "$moddir/modules.builtin" 2>/dev/null; then return 0; fi
		echo "qemu-deps: module $m not in $kpkg" >&2
		exit 1
	fi
	for dep in $(modinfo -F depends "$f" | tr ',' ' '); do resolve "$dep"; done
	case $f in
	*.ko) cp "$f" "$root/lib/modules/$m.ko" ;;
	*.ko.xz) xz -dc "$f" >"$root/lib/modules/$m.ko" ;;
	*.ko.zst) zstd -qdc "$f" >"$root/lib/modules/$m.ko" ;;
	*.ko.gz) gzip -dc "$f" >"$root/lib/modules/$m.ko" ;;
	*) echo "qemu-deps: unknown module format $f" >&2; exit 1 ;;
	esac
	order+=("$m")
}
for m in virtio_pci virtio_net; do resolve "$m"; done
printf '%s\n' "${order[@]}" >"$root/lib/modules/order"

cat >"$root/init" <<'EOF'
#!/bin/busybox sh
# lanes qemu test guest: see scripts/qemu-deps.sh.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null

off() { sync; poweroff -f; sleep 5; reboot -f; }

ip= peer= mtu= tries=60 hold=30
for a in $(cat /proc/cmdline); do
	case $a in
	lanes.ip=*) ip=${a#*=} ;;
	lanes.ping=*) peer=${a#*=} ;;
	lanes.mtu=*) mtu=${a#*=} ;;
	lanes.tries=*) tries=${a#*=} ;;
	lanes.hold=*) hold=${a#*=} ;;
	esac
done
echo "LANES-BOOTED uptime=$(cut -d' ' -f1 /proc/uptime)"

for m in $(cat /lib/modules/order); do
	insmod /lib/modules/$m.ko || echo "LANES-INSMOD-FAIL $m"
done
i=0
while [ ! -e /sys/class/net/eth0 ]; do
	i=$((i + 1))
	if [ $i -gt 100 ]; then echo "LANES-PING-FAIL no eth0"; ls /sys/class/net; off; fi
	usleep 100000
done
[ -n "$mtu" ] && ip link set eth0 mtu "$mtu"
ip link set lo up
ip link set eth0 up
if [ "$ip" = dhcp ]; then
	# busybox's udhcpc with a script that configures eth0 as a distribution's does.
	cat >/bin/lanes-dhcp <<'SCRIPT'
#!/bin/sh
case "$1" in
bound|renew)
	ip -4 addr flush dev "$interface"
	ip addr add "$ip/$mask" dev "$interface"
	[ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
	for r in $router; do ip route replace default via "$r" dev "$interface"; done
	echo "LANES-DHCP ip=$ip/$mask mtu=$mtu router=$router dns=$dns domain=$domain hostname=$hostname serverid=$serverid"
	;;
esac
exit 0
SCRIPT
	chmod 755 /bin/lanes-dhcp
	if ! udhcpc -i eth0 -f -q -n -t 20 -T 1 -s /bin/lanes-dhcp; then
		echo "LANES-PING-FAIL no DHCP lease"
		off
	fi
else
	ip addr add "$ip" dev eth0
fi
echo "LANES-NET $(ip -o link show eth0)"
echo "LANES-NET $(ip -o -4 addr show eth0)"

# The first echo can be lost while the overlay resolves the tunnel neighbour: retry.
i=0
while ! ping -c 1 -W 1 "$peer" >/dev/null 2>&1; do
	i=$((i + 1))
	if [ $i -ge "$tries" ]; then
		echo "LANES-PING-FAIL $peer after $tries tries"
		ip neigh
		off
	fi
done
rtt=$(ping -c 3 -i 0.2 "$peer" | tail -n 1)
echo "LANES-PING-OK $peer after $((i + 1)) tries uptime=$(cut -d' ' -f1 /proc/uptime) $rtt"
echo "LANES-NEIGH $(ip neigh show "$peer")"

# Stay up until the peer has pinged us (Icmp InEchos in /proc/net/snmp), so that the
# test can check the other direction too, then power off.
echos() { awk '/^Icmp:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "InEchos") c = i; h = 1 } else print $c }' /proc/net/snmp; }
i=0
while [ "$(echos)" -eq 0 ]; do
	i=$((i + 1))
	if [ $i -gt $((hold * 10)) ]; then echo "LANES-NOT-ECHOED within ${hold}s"; off; fi
	usleep 100000
done
echo "LANES-ECHOED $(echos)"
off
EOF
chmod 755 "$root/init"

(cd "$root" && find . | LC_ALL=C sort | {
	if command -v cpio >/dev/null 2>&1; then cpio -o -H newc --quiet -R 0:0; else "$root/bin/busybox" cpio -o -H newc -R 0:0; fi
} | gzip -9n >"$work/initrd.img")
cp "$work/kernel/boot/vmlinuz-$kver" "$cache/vmlinuz.new"
mv "$cache/vmlinuz.new" "$cache/vmlinuz"
mv "$work/initrd.img" "$cache/initrd.img"
echo "$kpkg" >"$cache/kernel-package"
echo "$self_sum" >"$cache/stamp"
echo "qemu guest ready: $cache/vmlinuz ($kpkg), $cache/initrd.img (modules: ${order[*]})"
