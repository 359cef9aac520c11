package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "lb:", err)
		}
		os.Exit(1)
	}
}

// run parses args, listens, and serves until ctx is done; then it stops
// accepting and gives in-flight requests a few seconds to finish.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("lb", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "address to listen on")
	backendList := fs.String("backends", "", "comma-separated backend addresses (host:port or http://host:port), required")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: lb -listen ADDR -backends ADDR,ADDR,...")
		fmt.Fprintln(stderr, "Round-robin HTTP load balancer without affinity (see go doc ./cmd/lb).")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	backends, err := ParseBackends(*backendList)
	if err != nil {
		return err
	}

	logger := slog.New(slog.NewTextHandler(stderr, nil))
	b := New(backends)
	b.Logger = logger

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *listen, err)
	}
	srv := &http.Server{
		Handler:           b,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	logger.Info("lb listening", "addr", ln.Addr().String(), "backends", strings.Join(hosts(backends), ","))

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(shutdownCtx)
	b.CloseIdleConnections()
	<-errc
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	logger.Info("lb stopped")
	return nil
}
