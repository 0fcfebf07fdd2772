package etcdapi

import (
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// clusterServer implements etcd's Cluster service.
type clusterServer struct {
	pb.UnimplementedClusterServer
	srv *Server
}
