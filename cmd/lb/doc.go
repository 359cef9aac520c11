// Command lb is a small round-robin HTTP load balancer for trying a raftsession
// cluster on one machine. It has no session affinity on purpose: consecutive
// requests from one browser land on different app instances, which is what the
// shared session store has to survive.
//
//	go run ./cmd/lb -listen 127.0.0.1:8080 -backends 127.0.0.1:8091,127.0.0.1:8092,127.0.0.1:8093
//
// Each request goes to the next backend in turn. When a backend cannot be
// reached the request moves on to the next one, under these rules:
//
//   - A request that never reached a backend (its connection was refused or
//     the dial failed) is tried on the next backend, whatever its method.
//   - A request that was sent but got no response (the backend died while
//     serving it) is tried again only when its method is idempotent (GET, HEAD,
//     OPTIONS, TRACE, PUT, DELETE). A POST or PATCH is never replayed once sent:
//     the backend may already have acted on it, and the client gets 502.
//   - A response, whatever its status, is passed on as it is.
//
// Request bodies up to 1 MiB are buffered so that they can be resent; a larger
// body is streamed and its request is never retried. Every response carries
// an X-Backend header naming the backend that served it. When no backend
// answers, the client gets 502 Bad Gateway.
//
// lb is a demo and test tool, not a production proxy: it has no health checks,
// no TLS and no limits beyond the ones above.
package main
