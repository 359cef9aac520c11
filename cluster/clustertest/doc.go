// Package clustertest starts real raftsession clusters inside Go tests:
// every node in this process, on 127.0.0.1 with free ports, its data under
// the test's TempDir, its logs in the test's log, and timings short enough
// for tests yet steady on a loaded machine. Adapters and applications use
// it to run their own tests over a cluster as they run them over a
// session.MemoryStore.
package clustertest
