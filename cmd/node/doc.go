// Command node runs one raftsession app instance: an embedded raft node
// that replicates HTTP sessions, the demo app on -http and the admin
// endpoints on -admin. Run it with -h for every flag.
package main
