package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeCert writes a certificate signed by ca (self-signed when ca is nil)
// and its key as PEM files dir/name.crt and dir/name.key.
func writeCert(t *testing.T, dir, name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	if isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	parent, signer := tmpl, key
	if ca != nil {
		parent, signer = ca, caKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// TestTLS runs a member with https client and peer URLs, client
// certificates required, plus a plaintext client URL and metrics URL, all
// from etcd's TLS variables; etcdctl talks to it with its certificate.
func TestTLS(t *testing.T) {
	pki := t.TempDir()
	ca, caKey := writeCert(t, pki, "ca", nil, nil, true)
	writeCert(t, pki, "server", ca, caKey, false)
	writeCert(t, pki, "peer", ca, caKey, false)
	writeCert(t, pki, "client", ca, caKey, false)
	f := func(name string) string { return filepath.Join(pki, name) }

	secure, plain, peer, metrics := freePort(t), freePort(t), freePort(t), freePort(t)
	env := []string{
		"ETCD_LISTEN_CLIENT_URLS=https://127.0.0.1:" + secure + ",http://127.0.0.1:" + plain,
		"ETCD_ADVERTISE_CLIENT_URLS=https://127.0.0.1:" + secure,
		"ETCD_LISTEN_PEER_URLS=https://127.0.0.1:" + peer,
		"ETCD_LISTEN_METRICS_URLS=http://127.0.0.1:" + metrics,
		"ETCD_CERT_FILE=" + f("server.crt"), "ETCD_KEY_FILE=" + f("server.key"),
		"ETCD_TRUSTED_CA_FILE=" + f("ca.crt"), "ETCD_CLIENT_CERT_AUTH=true",
		"ETCD_PEER_CERT_FILE=" + f("peer.crt"), "ETCD_PEER_KEY_FILE=" + f("peer.key"),
		"ETCD_PEER_TRUSTED_CA_FILE=" + f("ca.crt"), "ETCD_PEER_CLIENT_CERT_AUTH=true",
		"ETCD_ELECTION_TIMEOUT=" + testElectionMS,
	}
	p := startProc(t, "tls", t.TempDir(), env)
	tlsArgs := []string{"--cacert=" + f("ca.crt"), "--cert=" + f("client.crt"), "--key=" + f("client.key")}
	ep := "https://127.0.0.1:" + secure
	waitFor(t, 20*time.Second, "TLS member serves", func() (bool, string) {
		out, err := ctl(ep, append(tlsArgs, "put", "k", "v")...)
		return err == nil && out == "OK\n", fmt.Sprint(out, err)
	})
	if out := mustCtl(t, "127.0.0.1:"+plain, "get", "k", "--print-value-only"); out != "v\n" {
		t.Errorf("get on the plaintext URL printed %q", out)
	}
	// Without a client certificate the https URL refuses.
	if out, err := ctl(ep, "--cacert="+f("ca.crt"), "get", "k"); err == nil {
		t.Errorf("get without a client certificate succeeded: %q", out)
	}
	out := mustCtl(t, ep, append(tlsArgs, "member", "list")...)
	if !strings.Contains(out, ", started, default, https://127.0.0.1:"+peer+", https://127.0.0.1:"+secure+", false") {
		t.Errorf("member list: %q", out)
	}
	p.stop()
}
