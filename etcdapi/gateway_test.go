package etcdapi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/accordkv/accord"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// httpClient returns an HTTP client whose idle connections are closed
// when the test ends (goleak checks for their goroutines).
func httpClient(t testing.TB, tlsCfg *tls.Config, h2 bool) *http.Client {
	tr := &http.Transport{TLSClientConfig: tlsCfg, ForceAttemptHTTP2: h2}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// gwCall sends body (JSON-encoded unless it is a string) to url with
// method and returns the status and the raw answer.
func gwCall(t testing.TB, hc *http.Client, method, url string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, url, err)
	}
	return resp.StatusCode, data
}

// gwPost posts body to base+path, expects 200 and decodes the answer into
// out with protojson (which reads the gateway's proto field names).
// It returns the answer as generic JSON too, to check the wire format.
func gwPost(t testing.TB, hc *http.Client, base, path string, body any, out proto.Message) map[string]any {
	t.Helper()
	code, data := gwCall(t, hc, http.MethodPost, base+path, body)
	if code != http.StatusOK {
		t.Fatalf("POST %s: status %d: %s", path, code, data)
	}
	if out != nil {
		if err := protojson.Unmarshal(data, out); err != nil {
			t.Fatalf("POST %s: decode %s: %v", path, data, err)
		}
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("POST %s: %s: %v", path, data, err)
	}
	return m
}

// gwError posts body to base+path and expects an error answer with the
// given HTTP status, gRPC code and message (any message if msg is "").
func gwError(t testing.TB, hc *http.Client, base, path string, body any, status, code int, msg string) {
	t.Helper()
	got, data := gwCall(t, hc, http.MethodPost, base+path, body)
	var e struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(data, &e); err != nil || got != status || e.Code != code || (msg != "" && e.Message != msg) {
		t.Fatalf("POST %s: status %d %s (%v); want %d {code %d, message %q}", path, got, data, err, status, code, msg)
	}
}

// jsonPath walks generic JSON by object keys and array indexes.
func jsonPath(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			a, _ := v.([]any)
			if k >= len(a) {
				return nil
			}
			v = a[k]
		}
	}
	return v
}

func TestGateway(t *testing.T) {
	t.Parallel()
	c := newAPICluster(t, 1, nil)
	base := c.nodes[0].Endpoint()
	hc := httpClient(t, nil, false)
	memberID := MemberID(c.nodes[0].Store().NodeID())

	t.Run("KV", func(t *testing.T) {
		var put pb.PutResponse
		m := gwPost(t, hc, base, "/v3/kv/put", map[string]string{"key": b64("gw/foo"), "value": b64("bar")}, &put)
		if put.Header.GetRevision() < 2 || put.Header.GetMemberId() != memberID || put.Header.GetClusterId() == 0 || put.Header.GetRaftTerm() == 0 {
			t.Fatalf("put header %v", put.Header)
		}
		// etcd's wire format: proto field names, 64-bit integers as strings.
		if rev := jsonPath(m, "header", "revision"); rev != strconv.FormatInt(put.Header.Revision, 10) {
			t.Fatalf("header.revision on the wire: %#v in %v", rev, m)
		}
		if jsonPath(m, "header", "member_id") != strconv.FormatUint(memberID, 10) {
			t.Fatalf("header.member_id on the wire: %v", m)
		}
		for _, k := range []string{"gw/a", "gw/b"} {
			gwPost(t, hc, base, "/v3/kv/put", map[string]string{"key": b64(k), "value": b64("v-" + k)}, nil)
		}

		var rr pb.RangeResponse
		m = gwPost(t, hc, base, "/v3/kv/range", map[string]string{"key": b64("gw/foo")}, &rr)
		if len(rr.Kvs) != 1 || string(rr.Kvs[0].Value) != "bar" || rr.Count != 1 || rr.Kvs[0].ModRevision != put.Header.Revision {
			t.Fatalf("range: %v", &rr)
		}
		if jsonPath(m, "kvs", 0, "key") != b64("gw/foo") || jsonPath(m, "kvs", 0, "value") != b64("bar") ||
			jsonPath(m, "kvs", 0, "create_revision") == nil || jsonPath(m, "count") != "1" {
			t.Fatalf("range on the wire: %v", m)
		}
		if _, ok := jsonPath(m, "kvs", 0).(map[string]any)["lease"]; ok {
			t.Fatalf("unset fields are omitted, as etcd's gateway does: %v", m)
		}

		// Prefix, keys only, limit.
		rr.Reset()
		gwPost(t, hc, base, "/v3/kv/range", map[string]any{"key": b64("gw/"), "range_end": b64("gw0"), "keys_only": true, "limit": 2}, &rr)
		if rr.Count != 3 || !rr.More || len(rr.Kvs) != 2 || string(rr.Kvs[0].Key) != "gw/a" || string(rr.Kvs[1].Key) != "gw/b" || len(rr.Kvs[0].Value) != 0 {
			t.Fatalf("prefix range: %v", &rr)
		}

		// Txn: a value compare, success and failure branches.
		txn := map[string]any{
			"compare": []any{map[string]any{"key": b64("gw/foo"), "target": "VALUE", "result": "EQUAL", "value": b64("bar")}},
			"success": []any{
				map[string]any{"request_put": map[string]any{"key": b64("gw/foo"), "value": b64("baz")}},
				map[string]any{"request_range": map[string]any{"key": b64("gw/foo")}},
			},
			"failure": []any{map[string]any{"request_range": map[string]any{"key": b64("gw/a")}}},
		}
		var tr pb.TxnResponse
		gwPost(t, hc, base, "/v3/kv/txn", txn, &tr)
		if !tr.Succeeded || len(tr.Responses) != 2 || string(tr.Responses[1].GetResponseRange().Kvs[0].Value) != "baz" {
			t.Fatalf("txn: %v", &tr)
		}
		tr.Reset()
		m = gwPost(t, hc, base, "/v3/kv/txn", txn, &tr) // the value is baz now
		if tr.Succeeded || len(tr.Responses) != 1 || string(tr.Responses[0].GetResponseRange().Kvs[0].Value) != "v-gw/a" {
			t.Fatalf("failed txn: %v", &tr)
		}
		if _, ok := m["succeeded"]; ok {
			t.Fatalf("succeeded=false is omitted on the wire: %v", m)
		}

		var dr pb.DeleteRangeResponse
		gwPost(t, hc, base, "/v3/kv/deleterange", map[string]any{"key": b64("gw/"), "range_end": b64("gw0"), "prev_kv": true}, &dr)
		if dr.Deleted != 3 || len(dr.PrevKvs) != 3 {
			t.Fatalf("deleterange: %v", &dr)
		}

		var cr pb.CompactionResponse
		gwPost(t, hc, base, "/v3/kv/compaction", map[string]any{"revision": dr.Header.Revision}, &cr)

		// Errors: etcd's gRPC code and message, as grpc-gateway renders them.
		gwError(t, hc, base, "/v3/kv/range", map[string]any{"key": b64("gw/foo"), "revision": 2}, 400, 11, "etcdserver: mvcc: required revision has been compacted")
		gwError(t, hc, base, "/v3/kv/range", map[string]any{"key": b64("gw/foo"), "revision": 1 << 40}, 400, 11, "etcdserver: mvcc: required revision is a future revision")
		gwError(t, hc, base, "/v3/kv/put", map[string]any{"key": "", "value": b64("x")}, 400, 3, "etcdserver: key is not provided")
		gwError(t, hc, base, "/v3/kv/range", "{not json", 400, 3, "")
	})

	t.Run("NotFound", func(t *testing.T) {
		gwError(t, hc, base, "/v3/nope", map[string]any{}, 404, 5, "Not Found")
		for _, p := range []string{"/nope", "/v2/keys/foo"} {
			if code, body := gwCall(t, hc, http.MethodGet, base+p, nil); code != http.StatusNotFound {
				t.Fatalf("GET %s: %d %s", p, code, body)
			}
		}
	})

	t.Run("Watch", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
		defer cancel()
		// As with curl -d: the body holds one create request and ends; the
		// stream stays open.
		body := fmt.Sprintf(`{"create_request":{"key":%q,"range_end":%q,"prev_kv":true}}`, b64("w/"), b64("w0"))
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v3/watch", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			data, _ := io.ReadAll(resp.Body)
			t.Fatalf("watch: status %d: %s", resp.StatusCode, data)
		}
		lines := bufio.NewReader(resp.Body)
		next := func() *pb.WatchResponse {
			t.Helper()
			line, err := lines.ReadBytes('\n')
			if err != nil {
				t.Fatalf("watch stream: %q, %v", line, err)
			}
			var env struct {
				Result json.RawMessage `json:"result"`
				Error  json.RawMessage `json:"error"`
			}
			if err := json.Unmarshal(line, &env); err != nil || env.Result == nil {
				t.Fatalf("watch stream line %s: %v", line, err)
			}
			var wr pb.WatchResponse
			if err := protojson.Unmarshal(env.Result, &wr); err != nil {
				t.Fatalf("watch result %s: %v", env.Result, err)
			}
			return &wr
		}
		created := next()
		if !created.Created || created.Header.GetRevision() == 0 {
			t.Fatalf("first watch response: %v", created)
		}
		cli := newClient(t, base)
		if _, err := cli.Put(ctx, "w/x", "1"); err != nil {
			t.Fatal(err)
		}
		put2, err := cli.Put(ctx, "w/x", "2")
		if err != nil {
			t.Fatal(err)
		}
		var evs []*pb.WatchResponse
		for n := 0; n < 2; {
			wr := next()
			if wr.WatchId != created.WatchId || wr.Canceled {
				t.Fatalf("watch response %v", wr)
			}
			evs = append(evs, wr)
			n += len(wr.Events)
		}
		var all []string
		for _, wr := range evs {
			for _, ev := range wr.Events {
				s := fmt.Sprintf("%s %s=%s", ev.Type, ev.Kv.Key, ev.Kv.Value)
				if ev.PrevKv != nil {
					s += " prev=" + string(ev.PrevKv.Value)
				}
				all = append(all, s)
			}
		}
		if strings.Join(all, "; ") != "PUT w/x=1; PUT w/x=2 prev=1" || evs[len(evs)-1].Events[0].Kv.ModRevision != put2.Header.Revision {
			t.Fatalf("watch events: %v", all)
		}
		cancel() // ends the request, and so the stream
	})

	t.Run("Lease", func(t *testing.T) {
		var g pb.LeaseGrantResponse
		m := gwPost(t, hc, base, "/v3/lease/grant", map[string]any{"TTL": 60}, &g)
		if g.ID == 0 || g.TTL != 60 || g.Error != "" {
			t.Fatalf("grant: %v", &g)
		}
		if jsonPath(m, "ID") != strconv.FormatInt(g.ID, 10) {
			t.Fatalf("grant on the wire: %v", m)
		}
		gwPost(t, hc, base, "/v3/kv/put", map[string]any{"key": b64("lk"), "value": b64("v"), "lease": g.ID}, nil)

		var ttl pb.LeaseTimeToLiveResponse
		gwPost(t, hc, base, "/v3/lease/timetolive", map[string]any{"ID": g.ID, "keys": true}, &ttl)
		if ttl.ID != g.ID || ttl.GrantedTTL != 60 || ttl.TTL <= 0 || ttl.TTL > 60 || len(ttl.Keys) != 1 || string(ttl.Keys[0]) != "lk" {
			t.Fatalf("timetolive: %v", &ttl)
		}
		var ls pb.LeaseLeasesResponse
		gwPost(t, hc, base, "/v3/lease/leases", map[string]any{}, &ls)
		found := false
		for _, l := range ls.Leases {
			found = found || l.ID == g.ID
		}
		if !found {
			t.Fatalf("leases: %v does not list %d", &ls, g.ID)
		}

		// keepalive is a stream; the body's one request gets one answer.
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v3/lease/keepalive", strings.NewReader(fmt.Sprintf(`{"ID":%d}`, g.ID)))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(resp.Body).ReadBytes('\n')
		resp.Body.Close()
		if err != nil {
			t.Fatalf("keepalive: reading the first answer: %v", err)
		}
		var env struct {
			Result json.RawMessage `json:"result"`
		}
		var ka pb.LeaseKeepAliveResponse
		if err := json.Unmarshal(line, &env); err != nil || env.Result == nil || protojson.Unmarshal(env.Result, &ka) != nil || ka.ID != g.ID || ka.TTL != 60 {
			t.Fatalf("keepalive: status %d, %s (%v)", resp.StatusCode, line, err)
		}
		cancel()

		gwPost(t, hc, base, "/v3/lease/revoke", map[string]any{"ID": g.ID}, &pb.LeaseRevokeResponse{})
		var rr pb.RangeResponse
		gwPost(t, hc, base, "/v3/kv/range", map[string]any{"key": b64("lk")}, &rr)
		if rr.Count != 0 {
			t.Fatalf("key of a revoked lease: %v", &rr)
		}
		ttl.Reset()
		gwPost(t, hc, base, "/v3/lease/timetolive", map[string]any{"ID": g.ID}, &ttl)
		if ttl.TTL != -1 {
			t.Fatalf("timetolive of a revoked lease: %v", &ttl)
		}
	})

	t.Run("Cluster", func(t *testing.T) {
		var ml pb.MemberListResponse
		m := gwPost(t, hc, base, "/v3/cluster/member/list", map[string]any{}, &ml)
		if len(ml.Members) != 1 {
			t.Fatalf("member list: %v", &ml)
		}
		mem := ml.Members[0]
		if mem.ID != memberID || mem.Name != "node0" || len(mem.ClientURLs) != 1 || mem.ClientURLs[0] != base || len(mem.PeerURLs) != 1 || mem.IsLearner {
			t.Fatalf("member: %v", mem)
		}
		if jsonPath(m, "members", 0, "peerURLs") == nil || jsonPath(m, "members", 0, "ID") != strconv.FormatUint(memberID, 10) {
			t.Fatalf("member list on the wire: %v", m)
		}
	})

	t.Run("Maintenance", func(t *testing.T) {
		var st pb.StatusResponse
		gwPost(t, hc, base, "/v3/maintenance/status", map[string]any{}, &st)
		if st.Version != Version || st.DbSize <= 0 || st.Leader != memberID || st.Header.GetMemberId() != memberID || st.RaftTerm == 0 {
			t.Fatalf("status: %v", &st)
		}
		var al pb.AlarmResponse
		gwPost(t, hc, base, "/v3/maintenance/alarm", map[string]any{"action": "GET"}, &al)
		if len(al.Alarms) != 0 {
			t.Fatalf("alarms: %v", &al)
		}
	})

	t.Run("Auth", func(t *testing.T) {
		gwError(t, hc, base, "/v3/auth/authenticate", map[string]any{"name": "root", "password": "x"}, 400, 9, "etcdserver: authentication is not enabled")
	})

	t.Run("HealthVersion", func(t *testing.T) {
		for _, p := range []string{"/health", "/health?serializable=true"} {
			code, body := gwCall(t, hc, http.MethodGet, base+p, nil)
			if code != http.StatusOK || string(body) != `{"health":"true","reason":""}` {
				t.Fatalf("GET %s: %d %s", p, code, body)
			}
		}
		if code, _ := gwCall(t, hc, http.MethodPost, base+"/health", "{}"); code != http.StatusMethodNotAllowed {
			t.Fatalf("POST /health: %d", code)
		}
		code, body := gwCall(t, hc, http.MethodGet, base+"/version", nil)
		want := fmt.Sprintf(`{"etcdserver":%q,"etcdcluster":"3.7.0","storage":"3.6.0"}`, Version)
		if code != http.StatusOK || string(body) != want {
			t.Fatalf("GET /version: %d %s, want %s", code, body, want)
		}
		code, body = gwCall(t, hc, http.MethodGet, base+"/readyz?verbose", nil)
		if code != http.StatusOK || !strings.Contains(string(body), "[+]linearizable_read ok\n") || !strings.HasSuffix(string(body), "ok\n") {
			t.Fatalf("GET /readyz?verbose: %d %s", code, body)
		}
		if code, body := gwCall(t, hc, http.MethodGet, base+"/livez", nil); code != http.StatusOK || string(body) != "ok\n" {
			t.Fatalf("GET /livez: %d %s", code, body)
		}
	})
}

// TestGatewayHealthNoQuorum: a member that has lost its quorum answers
// /health with 503 and health "false", and is healthy again once the
// quorum is back.
func TestGatewayHealthNoQuorum(t *testing.T) {
	t.Parallel()
	c := newAPICluster(t, 2, nil)
	hc := httpClient(t, nil, false)
	base := c.nodes[0].Endpoint()
	health := func() (int, healthJSON, string) {
		code, body := gwCall(t, hc, http.MethodGet, base+"/health", nil)
		var h healthJSON
		_ = json.Unmarshal(body, &h)
		return code, h, string(body)
	}
	if code, h, body := health(); code != http.StatusOK || h.Health != "true" {
		t.Fatalf("healthy cluster: %d %s", code, body)
	}
	c.nodes[1].kill()
	eventually(t, 15*time.Second, "/health reports the lost quorum", func() error {
		code, h, body := health()
		if code != http.StatusServiceUnavailable || h.Health != "false" ||
			(h.Reason != "RAFT NO LEADER" && !strings.HasPrefix(h.Reason, "RANGE ERROR:")) {
			return fmt.Errorf("%d %s", code, body)
		}
		t.Logf("without quorum: %d %s", code, strings.TrimSpace(body))
		return nil
	})
	// A serializable check needs no quorum.
	if code, body := gwCall(t, hc, http.MethodGet, base+"/health?serializable=true", nil); code != http.StatusOK {
		t.Fatalf("serializable health without quorum: %d %s", code, body)
	}
	if code, body := gwCall(t, hc, http.MethodGet, base+"/readyz", nil); code != http.StatusServiceUnavailable || !strings.Contains(string(body), "[-]linearizable_read failed") {
		t.Fatalf("readyz without quorum: %d %s", code, body)
	}
	c.nodes[1].restart()
	eventually(t, 20*time.Second, "/health recovers", func() error {
		if code, h, body := health(); code != http.StatusOK || h.Health != "true" {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
}

// testPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate, in memory and as PEM files (for etcdctl).
type testPKI struct {
	pool           *x509.CertPool
	server, client tls.Certificate
	caFile         string
	certFile       string // the client's
	keyFile        string
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "accord test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{pool: x509.NewCertPool()}
	p.pool.AddCert(caCert)
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	p.caFile = write("ca.pem", "CERTIFICATE", caDER)
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage, ips []net.IP) (tls.Certificate, []byte, []byte) {
		key := newKey()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  ips,
			DNSNames:     []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, der, keyDER
	}
	p.server, _, _ = issue(2, "accord", x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)})
	var certDER, keyDER []byte
	p.client, certDER, keyDER = issue(3, "client", x509.ExtKeyUsageClientAuth, nil)
	p.certFile = write("client.pem", "CERTIFICATE", certDER)
	p.keyFile = write("client-key.pem", "EC PRIVATE KEY", keyDER)
	return p
}

// newTLSCluster starts a 1-node cluster serving TLS with pki's server
// certificate, requiring client certificates from the CA if clientAuth.
// It returns the cluster and its https endpoint.
func newTLSCluster(t testing.TB, pki *testPKI, clientAuth bool) (*apiCluster, string) {
	t.Helper()
	c := newAPICluster(t, 1, func(_ int, o *accord.Options, api *Options) {
		api.TLS = &tls.Config{Certificates: []tls.Certificate{pki.server}, MinVersion: tls.VersionTLS12}
		if clientAuth {
			api.TLS.ClientCAs = pki.pool
			api.TLS.ClientAuth = tls.RequireAndVerifyClientCert
		}
		for i, u := range o.ClientURLs {
			o.ClientURLs[i] = strings.Replace(u, "http://", "https://", 1)
		}
	})
	return c, "https://" + c.nodes[0].clientAddr
}

// newTLSClient is a clientv3 client over TLS, closed when the test ends.
func newTLSClient(t testing.TB, cfg *tls.Config, endpoints ...string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, TLS: cfg, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("clientv3.New(%v): %v", endpoints, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func TestGatewayTLSClientCertAuth(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	_, ep := newTLSCluster(t, pki, true)

	// No client certificate: refused.
	anon := httpClient(t, &tls.Config{RootCAs: pki.pool}, false)
	if resp, err := anon.Get(ep + "/health"); err == nil {
		resp.Body.Close()
		t.Fatalf("GET /health without a client certificate: %s", resp.Status)
	}
	// A certificate from another CA: refused as well.
	other := newTestPKI(t)
	stranger := httpClient(t, &tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{other.client}}, false)
	if resp, err := stranger.Get(ep + "/health"); err == nil {
		resp.Body.Close()
		t.Fatalf("GET /health with a certificate from another CA: %s", resp.Status)
	}

	withCert := &tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{pki.client}}
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("http2=%v", h2), func(t *testing.T) {
			hc := httpClient(t, withCert, h2)
			resp, err := hc.Get(ep + "/health")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || string(body) != `{"health":"true","reason":""}` || resp.TLS == nil {
				t.Fatalf("GET /health: %s %s", resp.Status, body)
			}
			if wantMajor := map[bool]int{false: 1, true: 2}[h2]; resp.ProtoMajor != wantMajor {
				t.Fatalf("protocol %s, want HTTP/%d", resp.Proto, wantMajor)
			}
			key := fmt.Sprintf("tls/h2=%v", h2)
			gwPost(t, hc, ep, "/v3/kv/put", map[string]string{"key": b64(key), "value": b64("secret")}, nil)
			var rr pb.RangeResponse
			gwPost(t, hc, ep, "/v3/kv/range", map[string]string{"key": b64(key)}, &rr)
			if len(rr.Kvs) != 1 || string(rr.Kvs[0].Value) != "secret" {
				t.Fatalf("range over TLS: %v", &rr)
			}
		})
	}

	t.Run("clientv3", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
		defer cancel()
		cli := newTLSClient(t, withCert, ep)
		if _, err := cli.Put(ctx, "tls/v3", "x"); err != nil {
			t.Fatal(err)
		}
		get, err := cli.Get(ctx, "tls/", clientv3.WithPrefix())
		if err != nil || get.Count != 3 {
			t.Fatalf("get over TLS: %v %v", get, err)
		}
		// Without a client certificate the call fails.
		anonCli := newTLSClient(t, &tls.Config{RootCAs: pki.pool}, ep)
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		defer acancel()
		if _, err := anonCli.Get(actx, "tls/v3"); err == nil {
			t.Fatal("clientv3 without a client certificate was served")
		}
	})
}

func TestGatewayTLSServerOnly(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	_, ep := newTLSCluster(t, pki, false)
	cfg := &tls.Config{RootCAs: pki.pool}
	hc := httpClient(t, cfg, false)
	gwPost(t, hc, ep, "/v3/kv/put", map[string]string{"key": b64("k"), "value": b64("v")}, nil)

	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	cli := newTLSClient(t, cfg, ep)
	get, err := cli.Get(ctx, "k")
	if err != nil || len(get.Kvs) != 1 || string(get.Kvs[0].Value) != "v" {
		t.Fatalf("get over TLS: %v %v", get, err)
	}
	// A client that does not trust the CA gets nowhere.
	hcBad := httpClient(t, &tls.Config{}, false)
	if resp, err := hcBad.Get(ep + "/health"); err == nil {
		resp.Body.Close()
		t.Fatalf("an untrusted server certificate was accepted: %s", resp.Status)
	}
}
