package nocloud

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestImageReadsBack writes a seed and reads it with Linux's own readers: blkid must
// see a vfat file system labelled CIDATA (how cloud-init finds it), and the kernel's
// vfat driver, through a loop mount, must show each file under its long name with
// its bytes.
func TestImageReadsBack(t *testing.T) {
	big := bytes.Repeat([]byte("#cloud-config\n# padding to span clusters\n"), 2000) // ~80 KB
	seed := Seed{InstanceID: "3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b", Hostname: "web-1", SSHKeys: []string{"ssh-ed25519 AAAAC3Nza test@lanes"},
		UserData: big, NetworkConfig: DHCPNetworkConfig("FA:16:3E:00:00:05")}
	img, err := Image(Label, seed.Files())
	if err != nil {
		t.Fatal(err)
	}
	if len(img)%512 != 0 || len(img) < 2880*512 {
		t.Fatalf("image of %d bytes", len(img))
	}
	again, _ := Image(Label, seed.Files())
	if !bytes.Equal(img, again) {
		t.Error("two images of the same seed differ")
	}
	file := filepath.Join(t.TempDir(), "seed.img")
	if err := os.WriteFile(file, img, 0o644); err != nil {
		t.Fatal(err)
	}
	blkid, err := exec.LookPath("blkid")
	if err != nil {
		t.Skip("needs blkid (util-linux)")
	}
	out, err := exec.Command(blkid, "-p", "-o", "export", file).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "TYPE=vfat") || !strings.Contains(string(out), "LABEL=CIDATA") {
		t.Fatalf("blkid: %v\n%s", err, out)
	}
	// The file system's structure, as dosfstools' checker sees it.
	if fsck, err := exec.LookPath("fsck.fat"); err == nil {
		if out, err := exec.Command(fsck, "-n", "-v", file).CombinedOutput(); err != nil {
			t.Errorf("fsck.fat: %v\n%s", err, out)
		}
	}
	// The files, through the kernel's vfat driver (a loop mount) or, where this
	// kernel has none, mtools: both read the long names.
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "vfat", "-o", "loop,ro", file, dir).CombinedOutput(); err == nil {
		defer exec.Command("umount", dir).Run()
	} else if _, lerr := exec.LookPath("mcopy"); lerr == nil {
		t.Logf("no vfat mount (%s): reading with mtools", strings.TrimSpace(string(out)))
		if out, err := exec.Command("mcopy", "-n", "-i", file, "::meta-data", "::user-data", "::network-config", dir).CombinedOutput(); err != nil {
			t.Fatalf("mcopy: %v\n%s", err, out)
		}
	} else {
		t.Skipf("neither a vfat mount (%s) nor mtools (scripts/deps.sh installs it)", out)
	}
	for name, want := range seed.Files() {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %v, %d bytes, want %d", name, err, len(got), len(want))
		}
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "meta-data,network-config,user-data" {
		t.Errorf("directory lists %v", names)
	}
	md, _ := os.ReadFile(filepath.Join(dir, "meta-data"))
	for _, w := range []string{`instance-id: "3f2a1b4c-`, `local-hostname: "web-1"`, `public-keys:`, `- "ssh-ed25519 AAAAC3Nza test@lanes"`} {
		if !strings.Contains(string(md), w) {
			t.Errorf("meta-data lacks %q:\n%s", w, md)
		}
	}
}
