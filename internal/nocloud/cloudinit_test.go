package nocloud

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// cloudInitRead is a python program that reads a NoCloud seed directory with
// cloud-init's own code, as its NoCloud data source does once it has found and
// mounted the CIDATA disk, and prints what the guest would get.
const cloudInitRead = `
import sys, json
from cloudinit import util
from cloudinit.net import network_state
md, ud, vd = util.read_seeded(base="file://" + sys.argv[1] + "/")
nc = util.load_yaml(util.load_file(sys.argv[1] + "/network-config"))
ns = network_state.parse_net_config_data(nc)
ifaces = [{"mac": i.get("mac_address"), "subnets": [s.get("type") for s in i.get("subnets", [])]} for i in ns.iter_interfaces()]
print(json.dumps({"instance-id": md.get("instance-id"), "hostname": md.get("local-hostname"),
                  "keys": md.get("public-keys"), "user-data": ud.decode() if isinstance(ud, bytes) else ud, "ifaces": ifaces}))
`

// TestCloudInitReadsSeed checks the seed with a real cloud-init (Debian's package):
// the files, copied out of the image by mtools, parse as its NoCloud data source
// parses them, and the network-config gives the port's NIC DHCP.
func TestCloudInitReadsSeed(t *testing.T) {
	py := "/usr/bin/python3"
	if out, err := exec.Command(py, "-c", "import cloudinit").CombinedOutput(); err != nil {
		t.Skipf("needs cloud-init (apt-get install cloud-init): %v %s", err, out)
	}
	if _, err := exec.LookPath("mcopy"); err != nil {
		t.Skip("needs mtools")
	}
	seed := Seed{InstanceID: "3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b", Hostname: "web-1", SSHKeys: []string{"ssh-ed25519 AAAAC3Nza test@lanes"},
		UserData: []byte("#cloud-config\npackages: [nginx]\n"), NetworkConfig: DHCPNetworkConfig("fa:16:3e:00:00:05")}
	img, err := Image(Label, seed.Files())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "seed.img")
	if err := os.WriteFile(file, img, 0o644); err != nil {
		t.Fatal(err)
	}
	files := filepath.Join(dir, "files")
	if err := os.Mkdir(files, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mcopy", "-n", "-i", file, "::meta-data", "::user-data", "::network-config", files).CombinedOutput(); err != nil {
		t.Fatalf("mcopy: %v\n%s", err, out)
	}
	out, err := exec.Command(py, "-c", cloudInitRead, files).CombinedOutput()
	if err != nil {
		t.Fatalf("cloud-init: %v\n%s", err, out)
	}
	for _, want := range []string{`"instance-id": "3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b"`, `"hostname": "web-1"`, `"keys": ["ssh-ed25519 AAAAC3Nza test@lanes"]`,
		`packages: [nginx]`, `"mac": "fa:16:3e:00:00:05", "subnets": ["dhcp4"]`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("cloud-init read %s\nwant %s", out, want)
		}
	}
}
