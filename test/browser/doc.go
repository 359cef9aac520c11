// Package browser holds the end-to-end test a user would do by hand: a real
// browser (headless Debian chromium, driven with chromedp) uses the demo app
// of three cmd/node processes behind the round-robin cmd/lb, logs in, counts
// views on several nodes, loses the node that served it, and stays logged in.
//
//	go test -race ./test/browser/
//
// The test needs /usr/bin/chromium (scripts/ci-deps installs it). Without it
// the test is skipped, unless the environment variable CI is set: then it
// fails, so CI cannot pass without running it. go test -short skips it.
package browser
