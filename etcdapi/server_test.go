package etcdapi

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/accordkv/accord"
)

// TestCloseWithIdleConnections: Close returns promptly while clients hold
// idle connections of every kind open (native gRPC, HTTP/1, HTTP/2 over
// TLS, one that never sent a byte), and closes them.
func TestCloseWithIdleConnections(t *testing.T) {
	for _, withTLS := range []bool{false, true} {
		name := "plaintext"
		if withTLS {
			name = "tls"
		}
		t.Run(name, func(t *testing.T) {
			pki := newTestPKI(t)
			c := newAPICluster(t, 1, func(_ int, _ *accord.Options, api *Options) {
				if withTLS {
					api.TLS = &tls.Config{Certificates: []tls.Certificate{pki.server}, MinVersion: tls.VersionTLS12}
				}
			})
			nd := c.nodes[0]
			dial := func(proto string) net.Conn {
				raw, err := net.Dial("tcp", nd.clientAddr)
				if err != nil {
					t.Fatal(err)
				}
				if !withTLS {
					if proto == "h2" {
						_, _ = raw.Write([]byte(http2Preface))
					} else if proto == "http/1.1" {
						_, _ = raw.Write([]byte("GET /version HTTP/1.1\r\nHost: x\r\n\r\n"))
					}
					return raw
				}
				if proto == "" {
					return raw
				}
				tc := tls.Client(raw, &tls.Config{RootCAs: pki.pool, ServerName: "127.0.0.1", NextProtos: []string{proto}})
				if err := tc.Handshake(); err != nil {
					t.Fatal(err)
				}
				return tc
			}
			var conns []net.Conn
			for _, p := range []string{"h2", "http/1.1", ""} {
				conns = append(conns, dial(p))
			}
			done := make(chan struct{})
			go func() {
				nd.kill()
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				t.Fatal("Close hangs on idle client connections")
			}
			for i, cn := range conns {
				_ = cn.SetReadDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 4096)
				for {
					if _, err := cn.Read(buf); err != nil {
						if ne, ok := err.(net.Error); ok && ne.Timeout() {
							t.Fatalf("connection %d still open after Close", i)
						}
						break
					}
				}
				cn.Close()
			}
		})
	}
}
