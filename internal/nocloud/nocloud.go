// Package nocloud writes cloud-init NoCloud seeds: a small FAT12 disk image labelled
// CIDATA holding meta-data, user-data and network-config, which a guest's cloud-init
// finds by its label and reads before the network is up. lanesctl writes one per port
// for the hypervisor to attach as a read-only disk. It needs only the standard
// library: the image is laid out here, byte by byte.
package nocloud

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"unicode/utf16"
)

// Seed is what a guest's cloud-init learns from its NoCloud data source.
type Seed struct {
	InstanceID string   // changes make cloud-init run its per-instance modules again
	Hostname   string   // local-hostname
	SSHKeys    []string // public-keys, one OpenSSH public key each
	UserData   []byte   // user-data as given (#cloud-config, a script, ...); nil: an empty #cloud-config
	// NetworkConfig is a network-config (version 2) document; "" leaves the guest
	// to cloud-init's default, DHCP on the first NIC.
	NetworkConfig string
}

// Label is the volume label NoCloud looks for.
const Label = "CIDATA"

// Files renders the seed's files by name.
func (s Seed) Files() map[string][]byte {
	var md strings.Builder
	fmt.Fprintf(&md, "instance-id: %s\nlocal-hostname: %s\n", yamlString(s.InstanceID), yamlString(s.Hostname))
	if len(s.SSHKeys) > 0 {
		md.WriteString("public-keys:\n")
		for _, k := range s.SSHKeys {
			fmt.Fprintf(&md, "  - %s\n", yamlString(strings.TrimSpace(k)))
		}
	}
	ud := s.UserData
	if ud == nil {
		ud = []byte("#cloud-config\n{}\n")
	}
	files := map[string][]byte{"meta-data": []byte(md.String()), "user-data": ud}
	if s.NetworkConfig != "" {
		files["network-config"] = []byte(s.NetworkConfig)
	}
	return files
}

// yamlString quotes s as a YAML double-quoted scalar.
func yamlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20:
			fmt.Fprintf(&b, "\\x%02x", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// DHCPNetworkConfig is a network-config that brings up the NIC with MAC mac by DHCP.
func DHCPNetworkConfig(mac string) string {
	return fmt.Sprintf("version: 2\nethernets:\n  lanes0:\n    match:\n      macaddress: %s\n    dhcp4: true\n", yamlString(strings.ToLower(mac)))
}

// StaticNetworkConfig configures the NIC with MAC mac statically: for a network
// without DHCP.
func StaticNetworkConfig(mac, addrCIDR, gateway string, mtu int, dns []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "version: 2\nethernets:\n  lanes0:\n    match:\n      macaddress: %s\n    addresses: [%s]\n", yamlString(strings.ToLower(mac)), yamlString(addrCIDR))
	if mtu > 0 {
		fmt.Fprintf(&b, "    mtu: %d\n", mtu)
	}
	if gateway != "" {
		fmt.Fprintf(&b, "    routes:\n      - to: \"0.0.0.0/0\"\n        via: %s\n", yamlString(gateway))
	}
	if len(dns) > 0 {
		q := make([]string, len(dns))
		for i, d := range dns {
			q[i] = yamlString(d)
		}
		fmt.Fprintf(&b, "    nameservers:\n      addresses: [%s]\n", strings.Join(q, ", "))
	}
	return b.String()
}

// FAT12 geometry: 512-byte sectors, one reserved (boot) sector, two FATs, a 224-entry
// root directory (a floppy's), at least a 1.44 MB floppy's 2880 sectors.
const (
	sectorSize  = 512
	rootEntries = 224
	minSectors  = 2880
	maxClusters = 4084 // FAT12's limit
)

// Image lays the files out as a FAT12 file system labelled label, with long (VFAT)
// names, in the root directory.
func Image(label string, files map[string][]byte) ([]byte, error) {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	// Sectors per cluster: the smallest power of two that keeps FAT12's cluster
	// limit for this much data.
	need := 0
	for _, n := range names {
		need += (len(files[n]) + sectorSize - 1) / sectorSize
	}
	spc := 1
	for (need+spc-1)/spc+len(names) > maxClusters-16 {
		spc *= 2
		if spc > 64 {
			return nil, fmt.Errorf("nocloud: %d KiB of files is more than a FAT12 seed holds", need/2)
		}
	}
	clusters := 0
	for _, n := range names {
		clusters += max(1, (len(files[n])+spc*sectorSize-1)/(spc*sectorSize))
	}
	// The FATs cover every cluster of the volume, not only the used ones; their size
	// moves the data area, so settle it by iterating.
	rootSectors := rootEntries * 32 / sectorSize
	fatSectors, total, dataStart := 1, 0, 0
	for range 4 {
		dataStart = 1 + 2*fatSectors + rootSectors
		total = max(minSectors, dataStart+clusters*spc)
		if (total-dataStart)/spc > maxClusters {
			total = dataStart + maxClusters*spc
		}
		fatSectors = (((total-dataStart)/spc+2)*3/2 + sectorSize) / sectorSize
	}
	dataStart = 1 + 2*fatSectors + rootSectors
	if total < dataStart+clusters*spc {
		total = dataStart + clusters*spc
	}
	img := make([]byte, total*sectorSize)

	// Boot sector with the BIOS parameter block (DOS 4.0 extended).
	bs := img[:sectorSize]
	copy(bs[0:3], []byte{0xeb, 0x3c, 0x90})
	copy(bs[3:11], "LANES   ")
	binary.LittleEndian.PutUint16(bs[11:], sectorSize)
	bs[13] = byte(spc)
	binary.LittleEndian.PutUint16(bs[14:], 1) // reserved sectors
	bs[16] = 2                                // FATs
	binary.LittleEndian.PutUint16(bs[17:], rootEntries)
	binary.LittleEndian.PutUint16(bs[19:], uint16(total))
	bs[21] = 0xf8 // fixed disk
	binary.LittleEndian.PutUint16(bs[22:], uint16(fatSectors))
	binary.LittleEndian.PutUint16(bs[24:], 32) // sectors per track
	binary.LittleEndian.PutUint16(bs[26:], 2)  // heads
	bs[36] = 0x80
	bs[38] = 0x29
	binary.LittleEndian.PutUint32(bs[39:], 0x4c414e45) // volume ID
	copy(bs[43:54], padName(label, 11))
	copy(bs[54:62], "FAT12   ")
	bs[510], bs[511] = 0x55, 0xaa

	fat := make([]byte, fatSectors*sectorSize)
	setFAT := func(n, v int) {
		off := n * 3 / 2
		if n%2 == 0 {
			fat[off] = byte(v)
			fat[off+1] = fat[off+1]&0xf0 | byte(v>>8)&0x0f
		} else {
			fat[off] = fat[off]&0x0f | byte(v<<4)
			fat[off+1] = byte(v >> 4)
		}
	}
	setFAT(0, 0xff8)
	setFAT(1, 0xfff)

	root := img[(1+2*fatSectors)*sectorSize : dataStart*sectorSize]
	entries := [][]byte{dirEntry(padName(label, 11), 0x08, 0, 0)}
	next := 2
	for i, n := range names {
		data := files[n]
		count := max(1, (len(data)+spc*sectorSize-1)/(spc*sectorSize))
		first := next
		for c := 0; c < count; c++ {
			if c == count-1 {
				setFAT(next, 0xfff)
			} else {
				setFAT(next, next+1)
			}
			next++
		}
		copy(img[(dataStart+(first-2)*spc)*sectorSize:], data)
		short := shortName(n, i+1)
		entries = append(entries, lfnEntries(n, short)...)
		start := first
		if len(data) == 0 {
			start = 0
		}
		entries = append(entries, dirEntry(short, 0x01|0x20, start, len(data))) // read-only, archive
	}
	if len(entries) > rootEntries {
		return nil, fmt.Errorf("nocloud: too many files")
	}
	for i, e := range entries {
		copy(root[i*32:], e)
	}
	for i := 0; i < 2; i++ {
		copy(img[(1+i*fatSectors)*sectorSize:], fat)
	}
	return img, nil
}

func padName(s string, n int) []byte {
	b := []byte(strings.ToUpper(s) + strings.Repeat(" ", n))
	return b[:n]
}

// shortName is the 8.3 alias of a long name: its first letters and "~i".
func shortName(long string, i int) []byte {
	var base []byte
	for _, c := range []byte(strings.ToUpper(long)) {
		if c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			base = append(base, c)
		}
	}
	tail := fmt.Sprintf("~%d", i)
	if len(base) > 8-len(tail) {
		base = base[:8-len(tail)]
	}
	return padName(string(base)+tail, 11)
}

func dirEntry(name []byte, attr byte, cluster, size int) []byte {
	e := make([]byte, 32)
	copy(e[0:11], name)
	e[11] = attr
	// 2026-01-01 00:00: a fixed time keeps the image the same for the same files.
	date := uint16((2026-1980)<<9 | 1<<5 | 1)
	binary.LittleEndian.PutUint16(e[14:], 0)
	binary.LittleEndian.PutUint16(e[16:], date)
	binary.LittleEndian.PutUint16(e[18:], date)
	binary.LittleEndian.PutUint16(e[22:], 0)
	binary.LittleEndian.PutUint16(e[24:], date)
	binary.LittleEndian.PutUint16(e[26:], uint16(cluster))
	binary.LittleEndian.PutUint32(e[28:], uint32(size))
	return e
}

// lfnEntries are the VFAT long-name entries of long, last part first, as they precede
// the 8.3 entry short.
func lfnEntries(long string, short []byte) [][]byte {
	var sum byte
	for _, c := range short {
		sum = (sum>>1 | sum<<7) + c
	}
	u := utf16.Encode([]rune(long))
	parts := (len(u) + 12) / 13
	var out [][]byte
	for p := parts; p >= 1; p-- {
		e := make([]byte, 32)
		e[0] = byte(p)
		if p == parts {
			e[0] |= 0x40
		}
		e[11], e[13] = 0x0f, sum
		chars := make([]uint16, 13)
		for i := range chars {
			switch j := (p-1)*13 + i; {
			case j < len(u):
				chars[i] = u[j]
			case j == len(u):
				chars[i] = 0
			default:
				chars[i] = 0xffff
			}
		}
		offs := []int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30}
		for i, o := range offs {
			binary.LittleEndian.PutUint16(e[o:], chars[i])
		}
		out = append(out, e)
	}
	return out
}
