package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// --peer-auto-tls, as etcd has it: without peer certificate files, a
// member with https peer URLs generates a self-signed certificate (in
// <data-dir>/fixtures/peer, where etcd keeps it) and encrypts peer traffic
// with it. Nobody can verify such a certificate, so members do not
// authenticate each other (accord.Options.PeerTLS with InsecureSkipVerify).
// A restart reuses the certificate while it is valid and names the same
// hosts.

// autoTLSDir is where the generated peer certificate lives.
func autoTLSDir(dataDir string) string { return filepath.Join(dataDir, "fixtures", "peer") }

// selfSignedPeerTLS returns the peer TLS configuration of --peer-auto-tls
// for a member reached at hosts (IPs or names), generating the
// certificate if there is no usable one.
func selfSignedPeerTLS(dataDir string, hosts []string, validity time.Duration) (*tls.Config, error) {
	dir := autoTLSDir(dataDir)
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil || !usableSelfCert(&cert, hosts) {
		if cert, err = writeSelfCert(dir, certPath, keyPath, hosts, validity); err != nil {
			return nil, fmt.Errorf("--peer-auto-tls: %w", err)
		}
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, nil
}

// usableSelfCert reports whether a stored certificate is valid for another
// day at least and names every host.
func usableSelfCert(cert *tls.Certificate, hosts []string) bool {
	leaf := cert.Leaf
	if leaf == nil {
		return false
	}
	if time.Now().Add(24 * time.Hour).After(leaf.NotAfter) {
		return false
	}
	for _, h := range hosts {
		if leaf.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

// writeSelfCert generates an ECDSA P-256 key and a self-signed certificate
// for hosts, writes both (the key readable by the owner only) and returns
// them.
func writeSelfCert(dir, certPath, keyPath string, hosts []string, validity time.Duration) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"accordd"}, CommonName: "accordd peer (--peer-auto-tls)"},
		NotBefore:             now.Add(-time.Minute), // clocks of members differ a little
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" && !slices.Contains(tmpl.DNSNames, h) {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tls.Certificate{}, err
	}
	// The key first: a crash between the two leaves a pair that does not
	// load, and the next start generates a new one.
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// writeFileAtomic writes data to path through a temporary file and a
// rename, so that path never holds half a file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return errors.Join(err, os.Remove(tmp))
	}
	return nil
}

// peerHosts are the hosts a member's peer certificate names: the
// advertised and the listening peer host (without a wildcard address).
func peerHosts(s *settings) []string {
	var hosts []string
	for _, h := range []string{s.advertisePeer.Hostname(), s.listenPeer.Hostname()} {
		if ip := net.ParseIP(h); h == "" || ip != nil && ip.IsUnspecified() || slices.Contains(hosts, h) {
			continue
		}
		hosts = append(hosts, h)
	}
	return hosts
}
