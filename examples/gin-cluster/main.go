package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/gin-gonic/gin"

	"github.com/raftsession/raftsession/adapter/ginmw"
	"github.com/raftsession/raftsession/cluster"
	"github.com/raftsession/raftsession/httpmw"
)

func main() {
	addrs := flag.String("http", "127.0.0.1:8081,127.0.0.1:8082,127.0.0.1:8083", "the three instances' HTTP addresses")
	dir := flag.String("data", "", "data directory (default: a new temporary one)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *dir == "" {
		d, err := os.MkdirTemp("", "gin-cluster-")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	gin.SetMode(gin.ReleaseMode)
	err := run(ctx, strings.Split(*addrs, ","), *dir, func(urls []string) { log.Printf("instances: %s", strings.Join(urls, " ")) })
	if err != nil {
		log.Fatal(err)
	}
}

// run starts one cluster node and one gin instance per address, serves
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
		sessions, err := httpmw.New(nodes[i].Store(), httpmw.Options{}) // keys from the cluster
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: app(nodes[i].ID(), sessions)}
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

// app is the gin application of one instance.
func app(node string, sessions *httpmw.Manager) http.Handler {
	r := gin.New()
	r.Use(ginmw.Sessions(sessions))
	r.POST("/login", func(c *gin.Context) {
		s := ginmw.Session(c)
		if err := s.Regenerate(); err != nil { // session fixation defence
			c.String(httpmw.StatusCode(err), "try again")
			return
		}
		s.Set("user", c.Query("user"))
		s.SetOwner("user:" + c.Query("user"))
		c.JSON(http.StatusOK, gin.H{"node": node, "user": c.Query("user")})
	})
	r.POST("/views", func(c *gin.Context) {
		n, err := ginmw.Session(c).Incr(c.Request.Context(), "views", 1)
		if err != nil {
			c.String(httpmw.StatusCode(err), "try again")
			return
		}
		c.JSON(http.StatusOK, gin.H{"node": node, "views": n})
	})
	r.GET("/", func(c *gin.Context) {
		s := ginmw.Session(c)
		c.JSON(http.StatusOK, gin.H{"node": node, "user": s.GetString("user"), "views": s.GetInt("views")})
	})
	return r
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
