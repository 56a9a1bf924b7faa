package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/internal/nocloud"
	"github.com/spf13/pflag"
)

// seedFlags are the cloud-init flags of port create and port seed: what the guest's
// NoCloud data source holds, and where its image goes.
type seedFlags struct {
	userData, out string
	sshKeys       list
}

func newSeedFlags(fs *pflag.FlagSet) *seedFlags {
	s := &seedFlags{}
	fs.StringVar(&s.userData, "user-data", "", "cloud-init user-data `FILE` for the guest (NoCloud seed)")
	fs.Var(&s.sshKeys, "ssh-key", "OpenSSH public key `FILE` for the guest (repeatable; NoCloud seed)")
	fs.StringVar(&s.out, "seed", "", "`FILE` to write the NoCloud seed image to (default PORT-seed.img with --user-data or --ssh-key)")
	return s
}

func (s *seedFlags) wanted() bool { return s.userData != "" || len(s.sshKeys) > 0 || s.out != "" }

// write makes port p's seed image and returns its path.
func (s *seedFlags) write(p api.Port, n api.Network) (string, error) {
	seed := nocloud.Seed{InstanceID: p.ID, Hostname: api.Hostname(p.Name)}
	if s.userData != "" {
		b, err := os.ReadFile(s.userData)
		if err != nil {
			return "", &api.FieldError{Field: "user-data", Value: s.userData, Reason: err.Error()}
		}
		seed.UserData = b
	}
	for _, f := range s.sshKeys {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", &api.FieldError{Field: "ssh-key", Value: f, Reason: err.Error()}
		}
		for _, line := range strings.Split(string(b), "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				if !strings.HasPrefix(line, "ssh-") && !strings.HasPrefix(line, "ecdsa-") && !strings.HasPrefix(line, "sk-") {
					return "", &api.FieldError{Field: "ssh-key", Value: f, Reason: "not an OpenSSH public key file (lines like ssh-ed25519 AAAA... comment)"}
				}
				seed.SSHKeys = append(seed.SSHKeys, line)
			}
		}
	}
	// The guest's NIC: DHCP where lanesd serves it, the port's address otherwise.
	// FixedIPs lists the IPv4 address first (the store keeps them so).
	if n.DHCP.Disabled && n.CIDR != "" && len(p.FixedIPs) > 0 {
		bits := strings.SplitN(n.CIDR, "/", 2)[1]
		seed.NetworkConfig = nocloud.StaticNetworkConfig(p.MAC, p.FixedIPs[0]+"/"+bits, n.Gateway, n.MTU, n.DHCP.DNSServers)
	} else {
		seed.NetworkConfig = nocloud.DHCPNetworkConfig(p.MAC)
	}
	img, err := nocloud.Image(nocloud.Label, seed.Files())
	if err != nil {
		return "", err
	}
	out := s.out
	if out == "" {
		out = p.Name + "-seed.img"
	}
	if err := os.WriteFile(out, img, 0o644); err != nil {
		return "", fmt.Errorf("write seed: %w", err)
	}
	return filepath.Abs(out)
}

// qemuLine is the qemu options of a port's NIC and, with a seed, its NoCloud disk.
func qemuLine(p api.Port, mtu int, seed string) string {
	tap := api.TapName(p.ID)
	q := fmt.Sprintf("-netdev tap,id=%s,ifname=%s,script=no,downscript=no -device virtio-net-pci,netdev=%s,mac=%s,host_mtu=%d",
		p.Name, tap, p.Name, p.MAC, mtu)
	if seed != "" {
		q += " -drive file=" + seed + ",if=virtio,format=raw,readonly=on"
	}
	return q
}

func (c *cli) portSeed(args []string) error {
	fs := newFlagSet("port seed")
	s := newSeedFlags(fs)
	pos, err := c.parse(fs, args, "PORT")
	if err != nil {
		return err
	}
	p, err := c.st.GetPort(c.ctx, pos[0])
	if err != nil {
		return err
	}
	n, err := c.st.GetNetwork(c.ctx, p.NetworkID)
	if err != nil {
		return err
	}
	path, err := s.write(p, n)
	if err != nil {
		return err
	}
	if c.structured() {
		return c.emit(map[string]string{"seed": path, "qemu": qemuLine(p, n.MTU, path)}, nil)
	}
	fmt.Fprintf(c.out, "seed: %s (NoCloud, %s)\nqemu: %s\n", path, strconv.Quote(nocloud.Label), qemuLine(p, n.MTU, path))
	return nil
}
