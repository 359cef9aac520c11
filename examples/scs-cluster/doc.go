// Command scs-cluster is an app written for github.com/alexedwards/scs/v2,
// moved onto a three-node raftsession cluster by one line:
//
//	sm.Store = scsstore.New(node.Store()) // was: sm.Store = memstore.New()
//
// Everything else is scs as before. It runs three instances in one
// process, each with its own cluster node (in production each instance is
// its own process or machine): a login on one is seen on the others, and
// a logout is not undone by a request still running elsewhere.
//
//	go run ./scs-cluster
//	curl -c jar -X POST 'http://127.0.0.1:8091/login?user=alice'
//	curl -b jar http://127.0.0.1:8092/
package main
