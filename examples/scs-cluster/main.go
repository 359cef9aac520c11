package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/alexedwards/scs/v2"

	"github.com/raftsession/raftsession/adapter/scsstore"
	"github.com/raftsession/raftsession/cluster"
	"github.com/raftsession/raftsession/httpmw"
)

func main() {
	addrs := flag.String("http", "127.0.0.1:8091,127.0.0.1:8092,127.0.0.1:8093", "the three instances' HTTP addresses")
	dir := flag.String("data", "", "data directory (default: a new temporary one)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *dir == "" {
		d, err := os.MkdirTemp("", "scs-cluster-")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	err := run(ctx, strings.Split(*addrs, ","), *dir, func(urls []string) { log.Printf("instances: %s", strings.Join(urls, " ")) })
	if err != nil {
		log.Fatal(err)
	}
}

// run starts one cluster node and one scs instance per address, serves
// until ctx ends, and calls ready with the instances' URLs.
func run(ctx context.Context, addrs []string, dir string, ready func(urls []string)) error {
	nodes, err := startCluster(ctx, len(addrs), dir)
	for _, n := range nodes {
		defer n.Close()
	}
	if err != nil {
		return err
	}
	var urls []string
	done := make(chan error, len(addrs))
	for i, addr := range addrs {
		sm := scs.New()
		sm.Store = scsstore.New(nodes[i].Store()) // the one line
		sm.ErrorFunc = httpmw.WriteError          // optional: 503 while the cluster elects a leader
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: app(nodes[i].ID(), sm)}
		go func() { done <- srv.Serve(ln) }()
		defer srv.Shutdown(context.Background())
		urls = append(urls, "http://"+ln.Addr().String())
	}
	ready(urls)
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return nil
	}
}

// app is the scs application, unchanged from its single-process days.
func app(node string, sm *scs.SessionManager) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		if err := sm.RenewToken(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		sm.Put(r.Context(), "user", r.URL.Query().Get("user"))
		fmt.Fprintf(w, "%s: logged in\n", node)
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		if err := sm.Destroy(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, node+": logged out\n")
	})
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s: hello %q\n", node, sm.GetString(r.Context(), "user"))
	})
	return sm.LoadAndSave(mux)
}

// startCluster starts size nodes on free loopback ports that bootstrap
// together, and waits until they have a cookie-signing key.
func startCluster(ctx context.Context, size int, dir string) ([]*cluster.Node, error) {
	var nodes []*cluster.Node
	for i := range size {
		cfg := cluster.DefaultConfig()
		cfg.NodeID = fmt.Sprintf("app-%d", i+1)
		cfg.DataDir = filepath.Join(dir, cfg.NodeID)
		cfg.RaftAddr, cfg.GossipAddr = "127.0.0.1:0", "127.0.0.1:0"
		cfg.BootstrapExpect = size
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		if i > 0 {
			cfg.Join = []string{nodes[0].GossipAddr()}
		}
		n, err := cluster.Start(ctx, cfg)
		if err != nil {
			return nodes, err
		}
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		if err := n.WaitSigningKey(ctx); err != nil {
			return nodes, errors.Join(errors.New("cluster did not form"), err)
		}
	}
	return nodes, nil
}
