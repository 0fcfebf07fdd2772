package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
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

// TestPeerAutoTLS runs three members the way etcd's test tooling starts
// etcd with peer TLS and no certificates: https peer URLs, --peer-auto-tls
// and --feature-gates (issue 17). Each member generates a self-signed
// certificate in <data-dir>/fixtures/peer, speaks TLS on the peer port with
// it, keeps it across a restart, and the three form one cluster.
func TestPeerAutoTLS(t *testing.T) {
	root := t.TempDir()
	type member struct {
		name, peer, client, dir string
		p                       *proc
	}
	var ms []*member
	var initial []string
	for i := range 3 {
		m := &member{name: fmt.Sprintf("n%d", i), peer: freePort(t), client: freePort(t)}
		m.dir = filepath.Join(root, m.name)
		ms = append(ms, m)
		initial = append(initial, m.name+"=https://127.0.0.1:"+m.peer)
	}
	for _, m := range ms {
		m.p = startProc(t, m.name, root, nil,
			"--name="+m.name, "--data-dir="+m.dir,
			"--listen-peer-urls=https://127.0.0.1:"+m.peer, "--initial-advertise-peer-urls=https://127.0.0.1:"+m.peer,
			"--listen-client-urls=http://127.0.0.1:"+m.client, "--advertise-client-urls=http://127.0.0.1:"+m.client,
			"--initial-cluster="+strings.Join(initial, ","), "--initial-cluster-state=new",
			"--peer-auto-tls", "--feature-gates=StopGRPCServiceOnDefrag=true,TxnModeWriteWithSharedBuffer=false",
			"--strict-reconfig-check", "--election-timeout="+testElectionMS)
	}
	ep := func(m *member) string { return "127.0.0.1:" + m.client }
	waitFor(t, 30*time.Second, "the auto-TLS cluster serves a write", func() (bool, string) {
		out, err := ctl(ep(ms[0]), "put", "k", "v")
		return err == nil && out == "OK\n", fmt.Sprint(out, err)
	})
	if out := mustCtl(t, ep(ms[2]), "get", "k", "--print-value-only"); out != "v\n" {
		t.Fatalf("get through another member printed %q", out)
	}
	for _, m := range ms {
		if !strings.Contains(m.p.logs(), "--peer-auto-tls: peer traffic is encrypted") || !strings.Contains(m.p.logs(), "--feature-gates StopGRPCServiceOnDefrag=true,TxnModeWriteWithSharedBuffer=false") {
			t.Errorf("%s did not log what --peer-auto-tls and --feature-gates do:\n%s", m.name, tail(m.p.logs(), 20))
		}
	}

	// The peer port speaks TLS with the certificate in the data directory.
	certPath := filepath.Join(autoTLSDir(ms[1].dir), "cert.pem")
	stored, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(stored)
	if block == nil {
		t.Fatalf("%s holds no PEM certificate", certPath)
	}
	pki := t.TempDir()
	writeCert(t, pki, "stranger", nil, nil, false)
	clientCert, err := tls.LoadX509KeyPair(filepath.Join(pki, "stranger.crt"), filepath.Join(pki, "stranger.key"))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", "127.0.0.1:"+ms[1].peer, &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{clientCert}})
	if err != nil {
		t.Fatalf("TLS handshake with the peer port: %v", err)
	}
	got := conn.ConnectionState().PeerCertificates
	conn.Close()
	if len(got) == 0 || !bytes.Equal(got[0].Raw, block.Bytes) {
		t.Fatalf("the peer port presents another certificate than %s", certPath)
	}
	if got[0].VerifyHostname("127.0.0.1") != nil {
		t.Errorf("the generated certificate does not name 127.0.0.1")
	}

	// A restart keeps the certificate, and the member rejoins.
	ms[1].p.stop()
	ms[1].p.restart()
	waitFor(t, 30*time.Second, "the restarted member serves", func() (bool, string) {
		out, err := ctl(ep(ms[1]), "put", "k2", "v2")
		return err == nil && out == "OK\n", fmt.Sprint(out, err)
	})
	if again, err := os.ReadFile(certPath); err != nil || !bytes.Equal(again, stored) {
		t.Errorf("the restart replaced the certificate (%v)", err)
	}
	for _, m := range ms {
		m.p.stop()
	}
}
