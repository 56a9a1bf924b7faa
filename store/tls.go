package store

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/lanes-net/lanes/api"
)

// ErrTLS is wrapped when a TLS handshake with etcd fails for a reason that retrying
// will not fix: etcd refused this client's certificate, or this client refused etcd's.
var ErrTLS = errors.New("TLS handshake refused")

// ClientTLS names the files a store client authenticates with. With etcd's
// --client-cert-auth the certificate's common name is the etcd user, so the
// certificate is the whole credential: there is no password.
type ClientTLS struct {
	// CACert is the bundle that signed etcd's server certificates (empty: the system's).
	CACert string
	// Cert and Key are this client's certificate and key.
	Cert, Key string
}

// Enabled reports whether any file is set.
func (c ClientTLS) Enabled() bool { return c != ClientTLS{} }

// Config loads the files into a TLS client configuration. The client certificate is
// read again for every handshake, so replacing the files (rotation) takes effect on the
// next connection without a restart.
func (c ClientTLS) Config() (*tls.Config, error) {
	if (c.Cert == "") != (c.Key == "") {
		if c.Cert == "" {
			return nil, &api.FieldError{Field: "etcd-cert", Reason: "etcd-key is set: give the certificate that goes with it"}
		}
		return nil, &api.FieldError{Field: "etcd-key", Reason: "etcd-cert is set: give its private key"}
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CACert != "" {
		b, err := os.ReadFile(c.CACert)
		if err != nil {
			return nil, &api.FieldError{Field: "etcd-cacert", Value: c.CACert, Reason: err.Error()}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, &api.FieldError{Field: "etcd-cacert", Value: c.CACert, Reason: "no PEM certificate in it"}
		}
		cfg.RootCAs = pool
	}
	if c.Cert != "" {
		pair, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, &api.FieldError{Field: "etcd-cert", Value: c.Cert, Reason: err.Error()}
		}
		var mu sync.Mutex
		last := &pair
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			mu.Lock()
			defer mu.Unlock()
			// A rotation writes the key and the certificate one after the other; in
			// between the pair does not match, and the last good one is still valid.
			if p, err := tls.LoadX509KeyPair(c.Cert, c.Key); err == nil {
				last = &p
			}
			return last, nil
		}
	}
	return cfg, nil
}

// leaf is the client certificate, for error messages; nil if unreadable.
func (c ClientTLS) leaf() *x509.Certificate {
	if c.Cert == "" {
		return nil
	}
	pair, err := tls.LoadX509KeyPair(c.Cert, c.Key)
	if err != nil || len(pair.Certificate) == 0 {
		return nil
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil
	}
	return leaf
}

// CheckEndpoints refuses endpoint lists that would send the store's traffic, which
// says where every VM is and what it may reach, unprotected over a network: plain
// http to anything but loopback, unless insecure is set. withTLS says TLS files were
// given, which a plain http endpoint would silently ignore.
func CheckEndpoints(endpoints []string, withTLS, insecure bool) error {
	if len(endpoints) == 0 {
		return &api.FieldError{Field: "etcd", Reason: "no endpoint"}
	}
	secure := map[bool]bool{}
	for _, ep := range endpoints {
		u, err := url.Parse(ep)
		if err != nil || (u.Host == "" && u.Scheme != "unix" && u.Scheme != "unixs") {
			return &api.FieldError{Field: "etcd", Value: ep, Reason: "want a URL like https://10.0.0.1:2379"}
		}
		switch u.Scheme {
		case "https", "unixs":
			secure[true] = true
		case "http":
			secure[false] = true
			if !insecure && !isLoopback(u.Hostname()) {
				return &api.FieldError{Field: "etcd", Value: ep, Reason: "plain http to a non-loopback address: " +
					"use https with etcd-cacert, etcd-cert and etcd-key, or give etcd-insecure to accept an unprotected store"}
			}
		case "unix":
			secure[false] = true
		default:
			return &api.FieldError{Field: "etcd", Value: ep, Reason: "scheme must be http, https, unix or unixs"}
		}
	}
	if len(secure) > 1 {
		// The etcd client uses the first endpoint's security for every connection.
		return &api.FieldError{Field: "etcd", Value: strings.Join(endpoints, ","), Reason: "mixes plain and TLS endpoints"}
	}
	if withTLS && secure[false] {
		return &api.FieldError{Field: "etcd", Value: strings.Join(endpoints, ","),
			Reason: "TLS files are given but the endpoints are plain: use https:// URLs"}
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// dialFunc makes the TCP connections of a client (tests and the lab dial inside a
// network namespace).
type dialFunc func(ctx context.Context, addr string) (net.Conn, error)

// probeTLS shakes hands with every TLS endpoint before the etcd client dials, so that
// a refused certificate is reported at once and by name instead of as a dial timeout.
// It returns nil when one endpoint accepts, or when none gave a definite answer (the
// client's own errors then tell what is wrong). The probe speaks TLS 1.2, where a
// refused client certificate fails the handshake itself; a server that insists on 1.3
// makes the probe inconclusive, not wrong.
func probeTLS(ctx context.Context, endpoints []string, cfg *tls.Config, files ClientTLS, dial dialFunc) error {
	type result struct {
		ok  bool
		err error
	}
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	results := make(chan result, len(endpoints))
	for _, ep := range endpoints {
		go func() {
			ok, err := probeOne(pctx, ep, cfg, files, dial)
			results <- result{ok, err}
		}()
	}
	var refused error
	for range endpoints {
		r := <-results
		if r.ok {
			return nil
		}
		if r.err != nil && refused == nil {
			refused = r.err
		}
	}
	return refused
}

func probeOne(ctx context.Context, ep string, cfg *tls.Config, files ClientTLS, dial dialFunc) (bool, error) {
	u, err := url.Parse(ep)
	if err != nil || u.Scheme != "https" {
		return false, nil
	}
	if dial == nil {
		dial = func(ctx context.Context, addr string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		}
	}
	conn, err := dial(ctx, u.Host)
	if err != nil {
		return false, nil
	}
	defer conn.Close()
	c := cfg.Clone()
	c.MaxVersion = tls.VersionTLS12
	if c.ServerName == "" {
		c.ServerName = u.Hostname()
	}
	tc := tls.Client(conn, c)
	if err := tc.HandshakeContext(ctx); err != nil {
		return false, explainTLS(ep, err, files)
	}
	return true, nil
}

// explainTLS turns a handshake error into one that says what to fix, or nil when the
// error is not about certificates (network trouble, an old protocol version).
func explainTLS(ep string, err error, files ClientTLS) error {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	ca := files.CACert
	if ca == "" {
		ca = "the system's CAs"
	}
	switch {
	case errors.As(err, &unknown):
		return fmt.Errorf("etcd at %s: %w: its server certificate is not signed by a CA in etcd-cacert (%s): %v", ep, ErrTLS, ca, err)
	case errors.As(err, &host):
		return fmt.Errorf("etcd at %s: %w: its server certificate does not name this address (reissue it with the address as a SAN): %v", ep, ErrTLS, err)
	case errors.As(err, &invalid):
		return fmt.Errorf("etcd at %s: %w: its server certificate is not valid now: %v", ep, ErrTLS, err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "remote error: tls:") {
		return nil
	}
	if strings.Contains(msg, "protocol version") {
		return nil
	}
	if files.Cert == "" {
		// TLS 1.2 servers answer a missing certificate with a handshake failure.
		return fmt.Errorf("etcd at %s: %w: etcd requires a client certificate: give etcd-cert and etcd-key (%v)", ep, ErrTLS, err)
	}
	who := files.Cert
	leaf := files.leaf()
	if leaf != nil {
		who = fmt.Sprintf("%s (CN %s, issued by %q)", files.Cert, leaf.Subject.CommonName, leaf.Issuer.CommonName)
	}
	if strings.Contains(msg, "handshake failure") {
		return nil // no common cipher or curve: not about certificates
	}
	now := time.Now()
	switch {
	case leaf != nil && now.After(leaf.NotAfter):
		return fmt.Errorf("etcd at %s: %w: client certificate %s expired at %s: issue a new one and replace the files (%v)",
			ep, ErrTLS, who, leaf.NotAfter.UTC().Format(time.RFC3339), err)
	case leaf != nil && now.Before(leaf.NotBefore):
		return fmt.Errorf("etcd at %s: %w: client certificate %s is not valid before %s: check the clocks (%v)",
			ep, ErrTLS, who, leaf.NotBefore.UTC().Format(time.RFC3339), err)
	case strings.Contains(msg, "unknown certificate authority"):
		return fmt.Errorf("etcd at %s: %w: client certificate %s is not signed by a CA etcd trusts (%v)", ep, ErrTLS, who, err)
	}
	return fmt.Errorf("etcd at %s: %w: etcd refused client certificate %s (%v)", ep, ErrTLS, who, err)
}
