// Package pki is the small certificate authority behind `lanesctl pki`: one CA for a
// lanes cluster, a server certificate for the etcd members (client and peer URLs), and
// one client certificate per host, operator and reader, whose common name is the etcd
// user it authenticates as. It uses crypto/x509 only: ECDSA P-256 keys, random 128-bit
// serials, no CRLs (a retired identity is removed from etcd's users instead).
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Lifetimes. A leaf outlives no CA; a year keeps rotation a yearly chore that
// nobody forgets how to do, and a lost laptop's certificate dies on its own.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	LeafValidity = 365 * 24 * time.Hour
	// backdate covers clocks a little behind the issuer's.
	backdate = 5 * time.Minute
)

// File names inside a PKI directory.
const (
	CACert = "ca.crt"
	CAKey  = "ca.key"
)

// Kind says what a leaf certificate is for; it decides its key usages and file name.
type Kind string

const (
	// Server is an etcd member: serverAuth for its client and peer URLs, and clientAuth
	// because members dial each other with the same certificate.
	Server   Kind = "server"
	Host     Kind = "host"
	Operator Kind = "operator"
	Reader   Kind = "reader"
	// Admin is etcd's root user: `lanesctl store init` and nothing else.
	Admin Kind = "root"
)

// Request describes a leaf certificate.
type Request struct {
	Kind Kind
	// CN is the etcd user name for client kinds, a label for servers.
	CN string
	// SANs are IP addresses or DNS names; servers need every name clients dial.
	SANs []string
	// NotBefore and NotAfter default to now (minus a few minutes) and now+LeafValidity.
	NotBefore, NotAfter time.Time
}

// CA is a loaded certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	PEM  []byte
}

// NewCA makes a self-signed CA valid from notBefore to notAfter (zero values: now
// and now+CAValidity).
func NewCA(cn string, notBefore, notAfter time.Time) (*CA, error) {
	if notBefore.IsZero() {
		notBefore = time.Now().Add(-backdate)
	}
	if notAfter.IsZero() {
		notAfter = notBefore.Add(CAValidity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"lanes"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// Issue signs a leaf certificate and returns it and its new private key, PEM encoded.
func (ca *CA) Issue(req Request) (certPEM, keyPEM []byte, err error) {
	if req.CN == "" {
		return nil, nil, errors.New("certificate: empty common name")
	}
	now := time.Now()
	if req.NotBefore.IsZero() {
		req.NotBefore = now.Add(-backdate)
	}
	if req.NotAfter.IsZero() {
		req.NotAfter = now.Add(LeafValidity)
	}
	if req.NotAfter.After(ca.Cert.NotAfter) {
		// A chain is only valid while every link is; say so instead of issuing a
		// certificate that dies early without warning.
		return nil, nil, fmt.Errorf("certificate %s would outlive its CA (CA expires %s): issue a shorter one or rotate the CA",
			req.CN, ca.Cert.NotAfter.Format(time.DateOnly))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("key for %s: %w", req.CN, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: req.CN, Organization: []string{"lanes"}, OrganizationalUnit: []string{string(req.Kind)}},
		NotBefore:    req.NotBefore,
		NotAfter:     req.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if req.Kind == Server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	for _, s := range req.SANs {
		if ip := net.ParseIP(s); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if s != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, s)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate for %s: %w", req.CN, err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("key for %s: %w", req.CN, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return s, nil
}

// Init creates a new CA in dir (made 0700 if missing). It refuses to replace an
// existing CA: every certificate it signed would stop being trusted.
func Init(dir, cn string) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki dir: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, CAKey)); err == nil {
		return nil, fmt.Errorf("%s already holds a CA (%s); replacing it would invalidate every certificate it signed",
			dir, filepath.Join(dir, CAKey))
	}
	ca, err := NewCA(cn, time.Time{}, time.Time{})
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	if err := writeFile(filepath.Join(dir, CAKey), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600, false); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, CACert), ca.PEM, 0o644, false); err != nil {
		return nil, err
	}
	return ca, nil
}

// Load reads the CA of dir.
func Load(dir string) (*CA, error) {
	cb, err := os.ReadFile(filepath.Join(dir, CACert))
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w (run lanesctl pki init first)", err)
	}
	kb, err := os.ReadFile(filepath.Join(dir, CAKey))
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	// ca.crt may hold several CAs while one is rotated out; the first is the issuer.
	cblk, _ := pem.Decode(cb)
	kblk, _ := pem.Decode(kb)
	if cblk == nil || kblk == nil {
		return nil, fmt.Errorf("%s: not a PEM certificate and key", dir)
	}
	cert, err := x509.ParseCertificate(cblk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, CACert), err)
	}
	k, err := x509.ParsePKCS8PrivateKey(kblk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, CAKey), err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: not a signing key", filepath.Join(dir, CAKey))
	}
	if pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%s does not belong to %s", filepath.Join(dir, CAKey), filepath.Join(dir, CACert))
	}
	return &CA{Cert: cert, Key: signer, PEM: cb}, nil
}

// Base is the file name (without .crt/.key) of a leaf in a PKI directory.
func Base(kind Kind, cn string) string {
	switch kind {
	case Server:
		if cn == "" || cn == "server" {
			return "server"
		}
		return "server-" + cn
	case Admin:
		return "root"
	}
	return string(kind) + "-" + cn
}

// Paths are the files of one leaf.
type Paths struct{ Cert, Key string }

// Write issues req with ca and writes <dir>/<Base>.crt and .key. An existing pair is
// replaced only when overwrite is set (rotation), and then atomically, so a daemon
// reading the files never sees a certificate without its key.
func (ca *CA) Write(dir string, req Request, overwrite bool) (Paths, error) {
	base := filepath.Join(dir, Base(req.Kind, req.CN))
	p := Paths{Cert: base + ".crt", Key: base + ".key"}
	if !overwrite {
		for _, f := range []string{p.Cert, p.Key} {
			if _, err := os.Stat(f); err == nil {
				return Paths{}, fmt.Errorf("%s exists (give --force to replace it)", f)
			}
		}
	}
	cert, key, err := ca.Issue(req)
	if err != nil {
		return Paths{}, err
	}
	if err := writeFile(p.Key, key, 0o600, overwrite); err != nil {
		return Paths{}, err
	}
	if err := writeFile(p.Cert, cert, 0o644, overwrite); err != nil {
		return Paths{}, err
	}
	return p, nil
}

func writeFile(path string, b []byte, mode os.FileMode, replace bool) error {
	if !replace {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
		if err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		_, err = f.Write(b)
		return errors.Join(err, f.Close())
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Rename(tmp.Name(), path)
}

// Describe names a certificate for error messages: its CN, issuer and validity.
func Describe(c *x509.Certificate) string {
	return fmt.Sprintf("CN %s, issued by %q, valid %s to %s", c.Subject.CommonName, c.Issuer.CommonName,
		c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
}

// ParseCertFile reads the first certificate of a PEM file.
func ParseCertFile(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return x509.ParseCertificate(blk.Bytes)
}

// ValidSAN reports whether s can be a subject alternative name.
func ValidSAN(s string) bool {
	if net.ParseIP(s) != nil {
		return true
	}
	if s == "" || len(s) > 253 || strings.ContainsAny(s, " /:@") {
		return false
	}
	return true
}
