package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// statusJSON is one entry of `etcdctl endpoint status -w json`.
type statusJSON struct {
	Status struct {
		Version        string `json:"version"`
		DBSize         int64  `json:"dbSize"`
		DBSizeInUse    int64  `json:"dbSizeInUse"`
		DBSizeQuota    int64  `json:"dbSizeQuota"`
		StorageVersion string `json:"storageVersion"`
	} `json:"Status"`
}

func endpointStatusJSON(t *testing.T, endpoint string) statusJSON {
	t.Helper()
	var st []statusJSON
	out := mustCtl(t, endpoint, "endpoint", "status", "-w", "json")
	if err := json.Unmarshal([]byte(out), &st); err != nil || len(st) != 1 {
		t.Fatalf("endpoint status -w json: %v: %s", err, out)
	}
	return st[0]
}

// httpGet sends method to url with an Origin header and returns the
// answer's status, headers and body.
func httpGet(t *testing.T, method, url, origin string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// TestStatusDowngradeCORS checks, against a real accordd with stock
// etcdctl: endpoint status's storageVersion, dbSizeQuota and a
// dbSizeInUse below dbSize once data is freed; /version's storage field;
// --cors (etcd's Access-Control-* headers for a listed origin, none for
// another, 200 to OPTIONS); and `etcdctl downgrade`: every target refused
// with etcd's errors and, for 0.2, a message naming data directory format
// 3 and 0.3.0, the oldest release that reads it; cancel with nothing to
// cancel succeeds as in etcd. A build advertising the next minor version
// validates a downgrade to 0.3, which reads its format, and refuses to
// enable it.
func TestStatusDowngradeCORS(t *testing.T) {
	t.Parallel()
	client := "http://127.0.0.1:" + freePort(t)
	p := startProc(t, "ops", t.TempDir(), nil,
		"--name=ops", "--data-dir=ops.accord",
		"--listen-client-urls="+client, "--advertise-client-urls="+client,
		"--listen-peer-urls=http://127.0.0.1:"+freePort(t), "--election-timeout="+testElectionMS,
		"--quota-backend-bytes=104857600", "--cors=http://app.example:8080,https://b.example:443")
	waitFor(t, 30*time.Second, "accordd serves", func() (bool, string) {
		out, err := ctl(client, "endpoint", "health")
		return err == nil, fmt.Sprint(out, err)
	})

	// Status fields.
	big := strings.Repeat("v", 4000)
	for i := range 100 {
		mustCtl(t, client, "put", fmt.Sprintf("k%03d", i), big)
	}
	mustCtl(t, client, "del", "k", "--prefix")
	out := mustCtl(t, client, "put", "last", "1", "-w", "json")
	var hdr struct {
		Header struct {
			Revision int64 `json:"revision"`
		} `json:"header"`
	}
	if err := json.Unmarshal([]byte(out), &hdr); err != nil {
		t.Fatal(err)
	}
	mustCtl(t, client, "compact", fmt.Sprint(hdr.Header.Revision))
	waitFor(t, 20*time.Second, "dbSizeInUse below dbSize after a compaction", func() (bool, string) {
		st := endpointStatusJSON(t, client)
		return st.Status.DBSizeInUse > 0 && st.Status.DBSizeInUse < st.Status.DBSize, fmt.Sprintf("%+v", st.Status)
	})
	st := endpointStatusJSON(t, client)
	if st.Status.StorageVersion != "3.6.0" || st.Status.DBSizeQuota != 104857600 {
		t.Errorf("endpoint status: storageVersion %q, dbSizeQuota %d; want 3.6.0 and 104857600", st.Status.StorageVersion, st.Status.DBSizeQuota)
	}
	if tbl := mustCtl(t, client, "endpoint", "status", "-w", "table"); !strings.Contains(tbl, "STORAGE VERSION") || !strings.Contains(tbl, "3.6.0") || !strings.Contains(tbl, "105 MB") {
		t.Errorf("endpoint status -w table:\n%s", tbl)
	}

	// /version and CORS.
	code, h, body := httpGet(t, http.MethodGet, client+"/version", "http://app.example:8080")
	if code != 200 || !strings.Contains(body, `"storage":"3.6.0"`) {
		t.Errorf("/version: %d %s", code, body)
	}
	if h.Get("Access-Control-Allow-Origin") != "http://app.example:8080" ||
		h.Get("Access-Control-Allow-Methods") != "POST, GET, OPTIONS, PUT, DELETE" ||
		h.Get("Access-Control-Allow-Headers") != "accept, content-type, authorization" {
		t.Errorf("/version from a listed origin: headers %v", h)
	}
	if _, h, _ := httpGet(t, http.MethodGet, client+"/health", "http://other.example:8080"); h.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("/health from an unlisted origin: Access-Control-Allow-Origin %q", h.Get("Access-Control-Allow-Origin"))
	}
	if code, h, body := httpGet(t, http.MethodOptions, client+"/v3/kv/range", "https://b.example:443"); code != 200 || body != "" || h.Get("Access-Control-Allow-Origin") != "https://b.example:443" {
		t.Errorf("OPTIONS /v3/kv/range: %d %q %v", code, body, h)
	}

	// Downgrade.
	for _, c := range []struct{ args, want string }{
		{"validate 0.2", "Error: rpc error: code = InvalidArgument desc = etcdserver: invalid downgrade target version: accord 0.2 cannot read data directory format 3, which this cluster's members write; the oldest release that reads it is 0.3.0"},
		{"enable 0.2.0", "Error: rpc error: code = InvalidArgument desc = etcdserver: invalid downgrade target version: accord 0.2 cannot read data directory format 3"},
		{"validate 3.6", "Error: etcdserver: invalid downgrade target version\n"},
		{"validate 0.3", "Error: etcdserver: invalid downgrade target version\n"},
		{"validate x", "Error: etcdserver: wrong downgrade target version format"},
	} {
		out, err := ctl(client, append([]string{"downgrade"}, strings.Fields(c.args)...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("downgrade %s: %q %v; want %q", c.args, out, err, c.want)
		}
	}
	if out := mustCtl(t, client, "downgrade", "cancel"); out != "Downgrade cancel success, cluster version 0.3\n" {
		t.Errorf("downgrade cancel: %q", out)
	}
	p.stop()

	next := "http://127.0.0.1:" + freePort(t)
	np := startProcWith(t, accorddNextBin, "ops-next", t.TempDir(), nil,
		"--name=next", "--data-dir=next.accord",
		"--listen-client-urls="+next, "--advertise-client-urls="+next,
		"--listen-peer-urls=http://127.0.0.1:"+freePort(t), "--election-timeout="+testElectionMS)
	waitFor(t, 30*time.Second, "accordd (next version) serves", func() (bool, string) {
		out, err := ctl(next, "endpoint", "health")
		return err == nil, fmt.Sprint(out, err)
	})
	nv := strings.Join(strings.Split(nextVersion, ".")[:2], ".")
	if out := mustCtl(t, next, "downgrade", "validate", "0.3"); out != "Downgrade validate success, cluster version "+nv+"\n" {
		t.Errorf("downgrade validate 0.3 on %s: %q", nv, out)
	}
	if _, err := ctl(next, "downgrade", "enable", "0.3"); err == nil || !strings.Contains(err.Error(), "Error: rpc error: code = Unimplemented desc = etcdserver: downgrade to 0.3 validated, but accord cannot yet hold a cluster at a lower version") {
		t.Errorf("downgrade enable 0.3 on %s: %v", nv, err)
	}
	np.stop()
}
