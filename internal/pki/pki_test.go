package pki

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestIssueAndVerify(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	ca, err := Init(dir, "test CA")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Init(dir, "again"); err == nil || !strings.Contains(err.Error(), "already holds a CA") {
		t.Errorf("second init: %v", err)
	}
	loaded, err := Load(dir)
	if err != nil || !loaded.Cert.Equal(ca.Cert) {
		t.Fatalf("load: %v", err)
	}
	if got := loaded.Cert.NotAfter.Sub(loaded.Cert.NotBefore); got < CAValidity {
		t.Errorf("CA valid for %s", got)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)

	srv, err := loaded.Write(dir, Request{Kind: Server, CN: "server", SANs: []string{"10.0.0.1", "etcd1.example"}}, false)
	if err != nil {
		t.Fatal(err)
	}
	host, err := loaded.Write(dir, Request{Kind: Host, CN: "cmp1"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(host.Cert) != "host-cmp1.crt" || filepath.Base(srv.Key) != "server.key" {
		t.Errorf("file names %s %s", host.Cert, srv.Key)
	}
	if fi, err := os.Stat(host.Key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode: %v %v", fi.Mode(), err)
	}
	for _, c := range []struct {
		p     Paths
		usage x509.ExtKeyUsage
		name  string
	}{
		{srv, x509.ExtKeyUsageServerAuth, "10.0.0.1"},
		{srv, x509.ExtKeyUsageServerAuth, "etcd1.example"},
		{srv, x509.ExtKeyUsageClientAuth, ""}, // members dial their peers with it
		{host, x509.ExtKeyUsageClientAuth, ""},
	} {
		pair, err := tls.LoadX509KeyPair(c.p.Cert, c.p.Key)
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := x509.ParseCertificate(pair.Certificate[0])
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: c.name, KeyUsages: []x509.ExtKeyUsage{c.usage}}); err != nil {
			t.Errorf("%s for %v %q: %v", c.p.Cert, c.usage, c.name, err)
		}
		if d := leaf.NotAfter.Sub(leaf.NotBefore); d < LeafValidity || d > LeafValidity+time.Hour {
			t.Errorf("%s valid for %s", c.p.Cert, d)
		}
	}
	pair, _ := tls.LoadX509KeyPair(host.Cert, host.Key)
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("a host certificate can serve")
	}
	if leaf.Subject.CommonName != "cmp1" {
		t.Errorf("CN %q", leaf.Subject.CommonName)
	}

	if _, err := loaded.Write(dir, Request{Kind: Host, CN: "cmp1"}, false); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("issuing over an existing pair: %v", err)
	}
	old, _ := os.ReadFile(host.Cert)
	if _, err := loaded.Write(dir, Request{Kind: Host, CN: "cmp1"}, true); err != nil {
		t.Fatal(err)
	}
	if now, _ := os.ReadFile(host.Cert); string(now) == string(old) {
		t.Error("rotation kept the old certificate")
	}
	if _, err := tls.LoadX509KeyPair(host.Cert, host.Key); err != nil {
		t.Errorf("rotated pair: %v", err)
	}
	if _, _, err := ca.Issue(Request{Kind: Host, CN: "x", NotAfter: ca.Cert.NotAfter.Add(time.Hour)}); err == nil || !strings.Contains(err.Error(), "outlive its CA") {
		t.Errorf("leaf outliving the CA: %v", err)
	}
}

func TestLoadRefusesMismatchedKey(t *testing.T) {
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	for _, d := range []string{a, b} {
		if _, err := Init(d, d); err != nil {
			t.Fatal(err)
		}
	}
	k, _ := os.ReadFile(filepath.Join(b, CAKey))
	if err := os.WriteFile(filepath.Join(a, CAKey), k, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(a); err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Errorf("mismatched CA key: %v", err)
	}
}
