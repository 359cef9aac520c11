// Command gin-cluster runs three instances of a gin app in one process,
// each with its own raftsession cluster node (in production each instance
// is its own process or machine, and Join names the others). The app uses
// raftsession's native session through adapter/ginmw: a login on one
// instance is seen by the next request on any other, and page views are
// counted with Incr, which never loses a concurrent increment. The cookie
// secret comes from the cluster's replicated keyring: nothing to
// configure.
//
//	go run ./gin-cluster
//	curl -c jar -X POST 'http://127.0.0.1:8081/login?user=alice'
//	curl -b jar -c jar -X POST http://127.0.0.1:8082/views
//	curl -b jar http://127.0.0.1:8083/
package main
