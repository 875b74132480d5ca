// Package proxies writes configuration files for the proxies the mesh benchmark puts
// between client and upstream (HAProxy, nginx and Envoy), finds their binaries and starts
// them as sidecar-like hops.
//
// Every configuration keeps connections alive and reuses them on both legs (client to proxy
// and proxy to upstream), runs one worker thread (a sidecar's share of a small node), logs
// nothing per request, and listens on 127.0.0.1 only. [Config] renders a file and
// [Kind.Supports] says which protocols a proxy can carry: nginx cannot speak HTTP/2 to an
// upstream except through grpc_pass, so it carries HTTP/1.1 and gRPC but not h2c.
package proxies
