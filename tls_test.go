package accord

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/accordkv/accord/internal/wire"
)

// Peer TLS: a cluster whose members present certificates from one CA
// forms and fails over; a host with a certificate from another CA, without
// a certificate, or without TLS at all can neither join nor speak raft or
// RPC to a member.

// testCA is a certificate authority made up for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool // holds just this CA
}

func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

func randomSerial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// issue makes a node certificate for 127.0.0.1 that serves as both a
// server and a client certificate, as peer certificates must.
func (ca *testCA) issue(t testing.TB, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(t),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// peerTLS is the Options.PeerTLS of a member of ca's cluster.
func (ca *testCA) peerTLS(t testing.TB, name string) *tls.Config {
	t.Helper()
	return &tls.Config{Certificates: []tls.Certificate{ca.issue(t, name)}, RootCAs: ca.pool, ClientCAs: ca.pool}
}

// withPeerTLS is a newTestCluster mutate hook that gives every node a
// certificate from ca.
func withPeerTLS(t testing.TB, ca *testCA) func(int, *Options) {
	return func(i int, o *Options) { o.PeerTLS = ca.peerTLS(t, fmt.Sprintf("n%d", i)) }
}

// presentAnyway makes conf present its certificate even to a server that
// asks for one from another CA (a Go client otherwise sends none), so that
// the server has to look at it and refuse it.
func presentAnyway(conf *tls.Config) {
	cert := conf.Certificates[0]
	conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
}

// statusFrame is a complete, valid RPC request frame (RPCStatus).
func statusFrame(t testing.TB) []byte {
	t.Helper()
	payload, err := wire.AppendRequest(nil, &wire.Request{Type: wire.RPCStatus, From: "tls-test-client"})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := wire.WriteFrame(&b, payload); err != nil {
		t.Fatal(err)
	}
	return []byte(b.String())
}

// rawExchange sends msg on conn and reads one RPC response frame. It
// returns the decoded response, or the error that ended the exchange.
func rawExchange(conn net.Conn, msg []byte) (*wire.Response, error) {
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write(msg); err != nil {
		return nil, err
	}
	frame, err := wire.ReadFrame(bufio.NewReader(conn), rpcMaxFrame)
	if err != nil {
		return nil, err
	}
	return wire.DecodeResponse(frame)
}

// isRemoteAlert reports whether err is a TLS alert the peer sent: the
// server looked at what we presented and refused it.
func isRemoteAlert(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "remote error"
}

// isTimeout reports whether err is a deadline expiring (the server kept
// the connection open without answering).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestTLSClusterFormsAndFailsOver(t *testing.T) {
	ca := newTestCA(t, "cluster-ca")
	c := newTestCluster(t, 3, withPeerTLS(t, ca))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	// A write on a follower is forwarded to the leader over TLS, and a
	// linearizable read on every member (read-index over TLS) sees it.
	r, err := c.follower().store().Put(ctx, "k", []byte("v"))
	if err != nil {
		t.Fatalf("put on follower: %v", err)
	}
	for _, nd := range c.running() {
		g, err := nd.store().Get(ctx, "k")
		if err != nil {
			t.Fatalf("get on node %d: %v", nd.idx, err)
		}
		if len(g.KVs) != 1 || string(g.KVs[0].Value) != "v" || g.KVs[0].ModRevision != r.Revision {
			t.Fatalf("node %d read %+v, want v at %d", nd.idx, g.KVs, r.Revision)
		}
	}

	// Kill the leader: the others elect a new one over TLS and take writes.
	old := c.leader()
	old.kill()
	nl := c.leader()
	if nl == old {
		t.Fatal("killed node is still the leader")
	}
	for _, nd := range c.running() {
		if _, err := nd.store().Put(ctx, fmt.Sprintf("after/%d", nd.idx), []byte("x")); err != nil {
			t.Fatalf("put on node %d after failover: %v", nd.idx, err)
		}
	}
	old.restart(false)
	c.waitConverged()
	g, err := old.store().Get(ctx, "after/", WithPrefix(), WithSerializable())
	if err != nil || len(g.KVs) != 2 {
		t.Fatalf("restarted node: %v %+v", err, g)
	}
}

func TestTLSForeignCertCannotJoin(t *testing.T) {
	ca := newTestCA(t, "cluster-ca")
	foreign := newTestCA(t, "foreign-ca")
	c := newTestCluster(t, 3, withPeerTLS(t, ca))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	l := c.leader().store()

	// The intruder trusts both CAs: whatever fails is the cluster refusing
	// its certificate, not the intruder refusing the cluster's.
	both := x509.NewCertPool()
	both.AddCert(ca.cert)
	both.AddCert(foreign.cert)
	intruderTLS := foreign.peerTLS(t, "intruder")
	intruderTLS.RootCAs, intruderTLS.ClientCAs = both, both
	presentAnyway(intruderTLS)

	addr := freePort(t)
	m, err := l.AddMember(ctx, addr, false)
	if err != nil {
		t.Fatal(err)
	}
	o := Options{
		Logger:          testLogger(t, "intruder"),
		ElectionTimeout: clusterElection,
		UnsafeNoFsync:   true,
		PeerAddr:        addr,
		PeerTLS:         intruderTLS,
		JoinExisting:    true,
		Peers:           []string{l.PeerAddr()},
		JoinTimeout:     300 * time.Millisecond,
	}

	t.Run("member lookup refused", func(t *testing.T) {
		s, err := Open(t.TempDir(), &o)
		if err == nil {
			s.Close()
			t.Fatal("a node with a foreign certificate learned its member ID and opened")
		}
		t.Logf("Open: %v", err)
	})

	t.Run("never receives the log", func(t *testing.T) {
		// Knowing its ID already, the intruder skips the lookup and waits
		// for the leader to send it the log; the leader refuses its server
		// certificate, and its own raft and RPC dials are refused.
		o := o
		o.NodeID = m.ID
		s, err := Open(t.TempDir(), &o)
		if err != nil {
			t.Fatalf("open intruder with a known ID: %v", err)
		}
		defer s.Close()
		// Four voters, three reachable: every write needs all three, so a
		// busy machine can cost the leader its lease now and then; a write
		// whose outcome that left unknown is simply written again.
		deadline := time.Now().Add(10 * clusterElection)
		for i := 0; time.Now().Before(deadline); i++ {
			key := fmt.Sprintf("k/%03d", i)
			_, err := c.running()[i%3].store().Put(ctx, key, []byte("v"))
			for retry := 0; errors.Is(err, ErrUnknownOutcome) && retry < 3; retry++ {
				_, err = c.running()[i%3].store().Put(ctx, key, []byte("v"))
			}
			if err != nil {
				t.Fatalf("cluster write %d with the intruder added: %v", i, err)
			}
			if got := s.fsm.applied.load(); got != 0 {
				t.Fatalf("intruder applied the log up to %d", got)
			}
			time.Sleep(5 * time.Millisecond) // a steady stream, not a flood
		}
		st, err := s.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Leader != "" || st.Revision != 1 || st.AppliedIndex != 0 {
			t.Fatalf("intruder status %+v: it heard from the cluster", st)
		}
		g, err := s.Get(ctx, "k/", WithPrefix(), WithSerializable())
		if err != nil || len(g.KVs) != 0 {
			t.Fatalf("intruder holds %v %+v", err, g)
		}
		// The cluster still lists it (it was added), and still works:
		// linearizable reads on every member.
		ms, err := l.Members(ctx)
		if err != nil || len(ms) != 4 {
			t.Fatalf("members: %v %+v", err, ms)
		}
		for _, nd := range c.running() {
			if _, err := nd.store().Get(ctx, "k/000"); err != nil {
				t.Fatalf("read on node %d: %v", nd.idx, err)
			}
		}
	})

	// Remove it: back to three members.
	if err := l.RemoveMember(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	if ms, err := l.Members(ctx); err != nil || len(ms) != 3 {
		t.Fatalf("members after removing the intruder: %v %+v", err, ms)
	}
}

// raftPrefix is the start of a raft AppendEntries request: the raft
// connection byte, raft's RPC type 0 and the start of a msgpack map that
// never ends (5 entries, the first key "Term" without a value). A raft
// server that accepted it would wait for the rest; one that refused the
// connection closes it. It is longer than a TLS record header, so that a
// TLS server has all it needs to refuse a plaintext dialer.
var raftPrefix = []byte{connRaft, 0, 0x85, 0xa4, 'T', 'e', 'r', 'm'}

// rawRaft sends raftPrefix on conn and reads, for at most wait.
func rawRaft(conn net.Conn, wait time.Duration) error {
	conn.SetDeadline(time.Now().Add(wait))
	if _, err := conn.Write(raftPrefix); err != nil {
		return err
	}
	var b [1]byte
	_, err := conn.Read(b[:])
	return err
}

// refusedByServer reports whether err ends an exchange that the server
// refused: a TLS alert, or the connection closed or reset. A timeout (the
// server waiting for more) is not a refusal.
func refusedByServer(err error) bool {
	return err != nil && !isTimeout(err) && (isRemoteAlert(err) || errors.Is(err, io.EOF) || isConnReset(err))
}

func TestTLSForeignCertCannotSpeakRaft(t *testing.T) {
	ca := newTestCA(t, "cluster-ca")
	foreign := newTestCA(t, "foreign-ca")
	c := newTestCluster(t, 1, withPeerTLS(t, ca))
	addr := c.leader().store().PeerAddr()

	// Control: the same raw client with a certificate of the cluster CA
	// gets an RPC answered, and raft waits for the rest of its request, so
	// what happens below happens because of the certificate.
	good := &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "good")}, RootCAs: ca.pool, ServerName: "127.0.0.1"}
	conn, err := tls.Dial("tcp", addr, good)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := rawExchange(conn, append([]byte{connRPC}, statusFrame(t)...))
	conn.Close()
	if err != nil || resp.Status == nil {
		t.Fatalf("RPC with a cluster certificate: %v %+v", err, resp)
	}
	conn, err = tls.Dial("tcp", addr, good)
	if err != nil {
		t.Fatal(err)
	}
	err = rawRaft(conn, 3*clusterElection)
	conn.Close()
	if !isTimeout(err) {
		t.Fatalf("raft with a cluster certificate: %v, want raft to wait for the rest of the request", err)
	}

	// A foreign certificate: the client trusts the cluster CA (so the
	// client side of the handshake completes) and presents its
	// certificate; the server refuses it and never hands the connection to
	// raft or to the RPC server.
	bad := &tls.Config{Certificates: []tls.Certificate{foreign.issue(t, "intruder")}, RootCAs: ca.pool, ServerName: "127.0.0.1"}
	presentAnyway(bad)
	for _, kind := range []byte{connRaft, connRPC} {
		conn, err := tls.Dial("tcp", addr, bad)
		if err != nil {
			if !isRemoteAlert(err) {
				t.Fatalf("dial: %v, want a TLS alert from the server", err)
			}
			continue
		}
		if kind == connRaft {
			err = rawRaft(conn, 5*time.Second)
		} else {
			resp, err = rawExchange(conn, append([]byte{connRPC}, statusFrame(t)...))
			if err == nil {
				t.Fatalf("RPC with a foreign certificate answered: %+v", resp)
			}
		}
		conn.Close()
		if !refusedByServer(err) {
			t.Fatalf("kind %q with a foreign certificate: %v, want the connection refused by the server", kind, err)
		}
	}
	// The member is unharmed.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := c.leader().store().Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
}

func isConnReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func TestTLSPlaintextDialerRefused(t *testing.T) {
	ca := newTestCA(t, "cluster-ca")
	c := newTestCluster(t, 1, withPeerTLS(t, ca))
	addr := c.leader().store().PeerAddr()
	for _, kind := range []byte{connRPC, connRaft} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		var resp *wire.Response
		if kind == connRaft {
			err = rawRaft(conn, 5*time.Second)
		} else {
			resp, err = rawExchange(conn, append([]byte{connRPC}, statusFrame(t)...))
		}
		conn.Close()
		if err == nil {
			t.Fatalf("plaintext kind %q got an answer %+v", kind, resp)
		}
		if !refusedByServer(err) {
			t.Fatalf("plaintext kind %q: %v, want the connection closed by the server", kind, err)
		}
	}
}

func TestTLSClientWithoutCertificateRefused(t *testing.T) {
	ca := newTestCA(t, "cluster-ca")
	c := newTestCluster(t, 1, withPeerTLS(t, ca))
	addr := c.leader().store().PeerAddr()
	noCert := &tls.Config{RootCAs: ca.pool, ServerName: "127.0.0.1"}
	for _, kind := range []byte{connRPC, connRaft} {
		conn, err := tls.Dial("tcp", addr, noCert)
		if err != nil {
			if !isRemoteAlert(err) {
				t.Fatalf("dial: %v, want a TLS alert from the server", err)
			}
			continue
		}
		var resp *wire.Response
		if kind == connRaft {
			err = rawRaft(conn, 5*time.Second)
		} else {
			resp, err = rawExchange(conn, append([]byte{connRPC}, statusFrame(t)...))
		}
		conn.Close()
		if err == nil {
			t.Fatalf("kind %q without a client certificate got an answer %+v", kind, resp)
		}
		if !refusedByServer(err) {
			t.Fatalf("kind %q without a client certificate: %v, want the connection refused by the server", kind, err)
		}
	}
}

func TestTLSOptionsValidation(t *testing.T) {
	ca := newTestCA(t, "cluster-ca")
	cert := ca.issue(t, "n")
	tests := []struct {
		name string
		conf *tls.Config
		want []string // each must appear in the error
	}{
		{"no certificate", &tls.Config{RootCAs: ca.pool, ClientCAs: ca.pool}, []string{"no certificate"}},
		{"no RootCAs", &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: ca.pool}, []string{"RootCAs"}},
		{"no ClientCAs", &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: ca.pool}, []string{"ClientCAs"}},
		{"nothing", &tls.Config{}, []string{"no certificate", "RootCAs"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir() + "/data"
			s, err := Open(dir, &Options{PeerAddr: "127.0.0.1:0", PeerTLS: tt.conf, ElectionTimeout: clusterElection})
			if err == nil {
				s.Close()
				t.Fatal("Open accepted the PeerTLS")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("Open refused the options but created the directory: %v", err)
			}
		})
	}
	// The complete configuration opens.
	s := openTestStore(t, "", &Options{PeerAddr: "127.0.0.1:0", PeerTLS: ca.peerTLS(t, "n"), ElectionTimeout: clusterElection, UnsafeNoFsync: true})
	if s.PeerAddr() == "" {
		t.Fatal("no peer address")
	}
}
