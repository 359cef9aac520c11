// Command echo is an echo (github.com/labstack/echo/v4) app that keeps
// using echo-contrib/session, with adapter/gorillastore as its store. It
// runs over a session.MemoryStore in one process; over a cluster the store
// is gorillastore.NewStore(node.Store()), and the cookie keys come from
// the cluster.
//
//	go run ./echo -addr 127.0.0.1:8070
//	curl -c jar -X POST 'http://127.0.0.1:8070/cart?item=book'
//	curl -b jar http://127.0.0.1:8070/
package main
