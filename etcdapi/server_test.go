package etcdapi

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

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

// TestRequestWithoutDeadlineTimesOut: with no quorum, requests whose
// client set no deadline (a write, a compaction, a lease grant, a
// linearizable read) end with etcd's "request timed out" after the
// server's request timeout, as in etcd, instead of waiting forever for a
// leader (issue 17, item 2).
func TestRequestWithoutDeadlineTimesOut(t *testing.T) {
	c := newAPICluster(t, 3, nil)
	nd := c.nodes[0]
	c.nodes[1].kill()
	c.nodes[2].kill()
	// Requests that a leader took before it stepped down end at once,
	// their outcome unknown; these wait for a leader.
	eventually(t, 10*time.Second, "node 0 to know no leader", func() error {
		if l := nd.Store().Leader(); l != "" {
			return fmt.Errorf("leader %s", l)
		}
		return nil
	})
	conn, err := grpc.NewClient(nd.clientAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	kv, lease := pb.NewKVClient(conn), pb.NewLeaseClient(conn)
	calls := map[string]func(context.Context) error{
		"put": func(ctx context.Context) error {
			_, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")})
			return err
		},
		"compact": func(ctx context.Context) error {
			_, err := kv.Compact(ctx, &pb.CompactionRequest{Revision: 1})
			return err
		},
		"range": func(ctx context.Context) error {
			_, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte("k")})
			return err
		},
		"grant": func(ctx context.Context) error {
			_, err := lease.LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: 60})
			return err
		},
	}
	bound := nd.Store().RequestTimeout()
	type result struct {
		name string
		err  error
		took time.Duration
	}
	results := make(chan result, len(calls))
	ctx, cancel := context.WithCancel(context.Background()) // no deadline; cancelled only to clean up
	defer cancel()
	for name, call := range calls {
		go func() {
			start := time.Now()
			err := call(ctx)
			results <- result{name, err, time.Since(start)}
		}()
	}
	limit := time.After(bound + 20*time.Second)
	for range calls {
		select {
		case r := <-results:
			if !isGRPCErr(r.err, rpctypes.ErrGRPCTimeout) {
				t.Errorf("%s without quorum: %v, want %v", r.name, r.err, rpctypes.ErrGRPCTimeout)
			}
			if r.took < bound-time.Second {
				t.Errorf("%s timed out after %v, before the request timeout %v", r.name, r.took, bound)
			}
		case <-limit:
			t.Fatalf("requests without a deadline still waiting %v after quorum was lost", bound+20*time.Second)
		}
	}
}
