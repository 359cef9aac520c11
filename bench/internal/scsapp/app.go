// Package scsapp is the demo app of cmd/node written the way an
// alexedwards/scs user would write it: the routes the benchmark workloads
// drive, and nothing else. It exists only as a peer for scripts/bench.
package scsapp

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alexedwards/scs/v2"
)

// Handler returns the demo routes wrapped in sm.LoadAndSave.
func Handler(sm *scs.SessionManager, node string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/session/values/{key}", func(w http.ResponseWriter, r *http.Request) {
		v, ok := sm.Get(r.Context(), "v:"+r.PathValue("key")).(string)
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, v)
	})
	mux.HandleFunc("PUT /api/session/values/{key}", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		if err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		sm.Put(r.Context(), "v:"+r.PathValue("key"), string(b))
		w.WriteHeader(http.StatusNoContent)
	})
	// The read-modify-write an scs user writes; concurrent requests on one
	// session overwrite each other's whole-session save and lose counts.
	mux.HandleFunc("POST /api/views", func(w http.ResponseWriter, r *http.Request) {
		n := sm.GetInt(r.Context(), "views") + 1
		sm.Put(r.Context(), "views", n)
		writeJSON(w, map[string]int{"views": n})
	})
	mux.HandleFunc("POST /api/login", func(w http.ResponseWriter, r *http.Request) {
		user := r.URL.Query().Get("user")
		if user == "" {
			http.Error(w, "user required", http.StatusBadRequest)
			return
		}
		if err := sm.RenewToken(r.Context()); err != nil {
			http.Error(w, "renew failed", http.StatusInternalServerError)
			return
		}
		sm.Put(r.Context(), "user", user)
		writeJSON(w, map[string]string{"user": user})
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	h := sm.LoadAndSave(mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Node", node)
		h.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// Main parses -http, -id and the flags register adds, opens the session
// manager with the function register returns, and serves Handler until
// SIGINT/SIGTERM. It is the whole main of each peer program.
func Main(name string, register func(fs *flag.FlagSet) (open func() (*scs.SessionManager, func(), error))) {
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	addr := fs.String("http", "127.0.0.1:8080", "HTTP listen address")
	id := fs.String("id", name, "value of the X-Node response header")
	open := register(fs)
	fs.Parse(os.Args[1:])
	sm, cleanup, err := open()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
	defer cleanup()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: Handler(sm, *id), ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Printf("%s listening on %s", name, ln.Addr())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}
