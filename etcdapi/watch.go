package etcdapi

import (
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// watchServer implements etcd's Watch service.
type watchServer struct {
	pb.UnimplementedWatchServer
	srv *Server
}
