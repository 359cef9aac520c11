// Package micro holds the middleware micro-benchmarks that compare
// raftsession's httpmw with github.com/alexedwards/scs/v2 in one process:
// one request through each middleware and a handler that reads or sets
// one value. They live in the bench module so that scs is not a
// requirement of the core module. Run them with
//
//	cd bench && go test -run '^$' -bench 'ReadPath|WritePath' -count=6 ./micro/
package micro
