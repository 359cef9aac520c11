// Command chi is a single-process app on github.com/go-chi/chi with
// raftsession's httpmw over a session.MemoryStore, and no secret to
// configure: the middleware signs cookies with a random key of the
// process, which lives exactly as long as the sessions.
//
//	go run ./chi -addr 127.0.0.1:8080
//	curl -i -c jar -X POST 'http://127.0.0.1:8080/login?user=alice'
//	curl -b jar http://127.0.0.1:8080/
package main
