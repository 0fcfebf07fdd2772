package etcdapi

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// maintenanceServer implements etcd's Maintenance service.
type maintenanceServer struct {
	pb.UnimplementedMaintenanceServer
	srv *Server
}

// authServer answers the Auth service: authentication is not enabled.
type authServer struct {
	pb.UnimplementedAuthServer
	srv *Server
}

func (a *authServer) Authenticate(context.Context, *pb.AuthenticateRequest) (*pb.AuthenticateResponse, error) {
	return nil, rpctypes.ErrGRPCAuthNotEnabled
}
