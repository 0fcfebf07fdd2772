package etcdapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"go.etcd.io/etcd/api/v3/etcdserverpb/gw"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/accordkv/accord"
)

// healthTimeout bounds the read /health, /livez and /readyz make.
const healthTimeout = time.Second

// newGateway returns the HTTP/JSON handler and the in-process gRPC
// connection it uses.
//
// The handler is etcd's: the grpc-gateway handlers etcd's API module
// ships (/v3/kv/range, /v3/watch, /v3/lease/grant, ...) on a runtime mux
// configured as etcd configures it (JSON with proto field names, unset
// fields omitted, unknown fields ignored; keys and values are base64, as
// protojson writes bytes), calling the gRPC services through conn so that
// every request takes the same path, and the same limits, as a gRPC
// client's. Besides, /health, /livez, /readyz and /version answer as
// etcd's do. etcd also proxies websockets on /v3/; this gateway serves
// streams (/v3/watch, /v3/lease/keepalive) as chunked HTTP only.
func (srv *Server) newGateway() (http.Handler, *grpc.ClientConn, error) {
	conn, err := grpc.NewClient("passthrough:///accord-gateway",
		grpc.WithContextDialer(srv.dialInner),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32)))
	if err != nil {
		return nil, nil, err
	}
	gwmux := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.HTTPBodyMarshaler{
			Marshaler: &runtime.JSONPb{
				MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: false},
				UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: true},
			},
		}),
	)
	ctx := context.Background() // the handlers keep no context of their own
	for _, register := range []func(context.Context, *runtime.ServeMux, *grpc.ClientConn) error{
		gw.RegisterKVHandler,
		gw.RegisterWatchHandler,
		gw.RegisterLeaseHandler,
		gw.RegisterClusterHandler,
		gw.RegisterMaintenanceHandler,
		gw.RegisterAuthHandler,
	} {
		if err := register(ctx, gwmux, conn); err != nil {
			_ = conn.Close()
			return nil, nil, fmt.Errorf("etcdapi: gateway: %w", err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/v3/", gwmux)
	mux.HandleFunc("/health", srv.serveHealth)
	mux.HandleFunc("/livez", srv.serveProbe(checkLivez))
	mux.HandleFunc("/readyz", srv.serveProbe(checkReadyz))
	mux.HandleFunc("/version", srv.serveVersion)
	return mux, conn, nil
}

// healthJSON is etcd's /health answer.
type healthJSON struct {
	Health string `json:"health"`
	Reason string `json:"reason"`
}

// serveHealth answers /health as etcd does: {"health":"true","reason":""}
// with 200, or "false" with a reason and 503. The member is healthy when a
// linearizable read (serializable with ?serializable=true) of key "health"
// succeeds within healthTimeout; a read that fails because no leader is
// known reports etcd's "RAFT NO LEADER". etcd's ?exclude= names alarms,
// which accord never raises, so it changes nothing.
func (srv *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	if !allowGet(w, r) {
		return
	}
	h := healthJSON{Health: "true"}
	if err := srv.readCheck(r.Context(), r.URL.Query().Get("serializable") == "true"); err != nil {
		h.Health = "false"
		if errors.Is(err, accord.ErrNoLeader) {
			h.Reason = "RAFT NO LEADER"
		} else {
			h.Reason = "RANGE ERROR:" + errMessage(err)
		}
	}
	d, _ := json.Marshal(h)
	if h.Health != "true" {
		http.Error(w, string(d), http.StatusServiceUnavailable)
		srv.log.Warn("/health error", "output", string(d))
		return
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(d)
}

// readCheck reads key "health" within healthTimeout.
func (srv *Server) readCheck(ctx context.Context, serializable bool) error {
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	opts := []accord.OpOption{accord.WithKeysOnly(), accord.WithLimit(1)}
	if serializable {
		opts = append(opts, accord.WithSerializable())
	}
	_, err := srv.store.Get(ctx, "health", opts...)
	return err
}

// errMessage is the etcd message for err ("etcdserver: no leader").
func errMessage(err error) string { return status.Convert(toGRPC(err)).Message() }

// probeCheck is one named check of /livez or /readyz.
type probeCheck struct {
	name  string
	check func(*Server, context.Context) error
}

// The checks etcd runs for /livez and /readyz (accord raises no alarms,
// so data_corruption always passes).
var (
	checkLivez = []probeCheck{
		{"serializable_read", func(srv *Server, ctx context.Context) error { return srv.readCheck(ctx, true) }},
	}
	checkReadyz = []probeCheck{
		{"data_corruption", func(*Server, context.Context) error { return nil }},
		{"serializable_read", func(srv *Server, ctx context.Context) error { return srv.readCheck(ctx, true) }},
		{"linearizable_read", func(srv *Server, ctx context.Context) error { return srv.readCheck(ctx, false) }},
		{"non_learner", func(srv *Server, ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, healthTimeout)
			defer cancel()
			st, err := srv.store.Status(ctx)
			if err != nil {
				return errors.New(errMessage(err))
			}
			if st.IsLearner {
				return errors.New("not supported for learner")
			}
			return nil
		}},
	}
)

// serveProbe answers /livez or /readyz as etcd does: "ok" (preceded by
// each check's line with ?verbose), or 503 with each check's line; checks
// named by ?exclude= are skipped.
func (srv *Server) serveProbe(checks []probeCheck) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !allowGet(w, r) {
			return
		}
		excluded := map[string]bool{}
		for _, name := range r.URL.Query()["exclude"] {
			excluded[name] = true
		}
		var out strings.Builder
		failed := false
		for _, c := range checks {
			if excluded[c.name] {
				continue
			}
			if err := c.check(srv, r.Context()); err != nil {
				failed = true
				fmt.Fprintf(&out, "[-]%s failed: %s\n", c.name, errMessage(err))
			} else {
				fmt.Fprintf(&out, "[+]%s ok\n", c.name)
			}
		}
		if failed {
			http.Error(w, out.String(), http.StatusServiceUnavailable)
			srv.log.Warn("health check error", "path", r.URL.Path, "reason", out.String())
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if _, ok := r.URL.Query()["verbose"]; ok {
			_, _ = fmt.Fprint(w, out.String())
		}
		_, _ = fmt.Fprint(w, "ok\n")
	}
}

// versionJSON is etcd's /version answer.
type versionJSON struct {
	Server  string `json:"etcdserver"`
	Cluster string `json:"etcdcluster"`
	Storage string `json:"storage,omitempty"`
}

// serveVersion answers /version: the server version (Version), the
// cluster version, which etcd reports as major.minor.0 of the API level
// every member speaks, and the storage version (kv.db's meta
// storageVersion, Store.StorageVersion), as etcd 3.6 and later do.
func (srv *Server) serveVersion(w http.ResponseWriter, r *http.Request) {
	if !allowGet(w, r) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	b, _ := json.Marshal(versionJSON{Server: Version, Cluster: clusterVersion(), Storage: srv.store.StorageVersion()})
	_, _ = w.Write(b)
}

// clusterVersion is EtcdAPIVersion as major.minor.0.
func clusterVersion() string {
	parts := strings.SplitN(EtcdAPIVersion, ".", 3)
	if len(parts) < 2 {
		return EtcdAPIVersion
	}
	return parts[0] + "." + parts[1] + ".0"
}

// allowGet answers 405 to anything but GET, as etcd's handlers do.
func allowGet(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet {
		return true
	}
	w.Header().Set("Allow", http.MethodGet)
	http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
	return false
}
