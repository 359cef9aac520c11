package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-chi/chi/v5"

	"github.com/raftsession/raftsession/httpmw"
	"github.com/raftsession/raftsession/session"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, func(url string) { log.Printf("listening on %s", url) }); err != nil {
		log.Fatal(err)
	}
}

// run serves the app on addr until ctx ends, calling ready with its URL
// once it listens.
func run(ctx context.Context, addr string, ready func(url string)) error {
	store := session.NewMemoryStore(session.MemoryOptions{})
	defer store.Close()
	sessions, err := httpmw.New(store, httpmw.Options{}) // no secret needed
	if err != nil {
		return err
	}
	r := chi.NewRouter()
	r.Use(sessions.Handler)
	r.Post("/login", func(w http.ResponseWriter, r *http.Request) {
		s := httpmw.FromContext(r.Context())
		if err := s.Regenerate(); err != nil {
			httpmw.WriteError(w, r, err)
			return
		}
		s.Set("user", r.URL.Query().Get("user"))
		fmt.Fprintln(w, "logged in")
	})
	r.Post("/logout", func(w http.ResponseWriter, r *http.Request) {
		if err := httpmw.FromContext(r.Context()).Destroy(r.Context()); err != nil {
			httpmw.WriteError(w, r, err)
		}
	})
	r.Get("/", func(w http.ResponseWriter, r *http.Request) {
		s := httpmw.FromContext(r.Context())
		n, err := s.Incr(r.Context(), "views", 1)
		if err != nil {
			httpmw.WriteError(w, r, err)
			return
		}
		fmt.Fprintf(w, "hello %q, view %d\n", s.GetString("user"), n)
	})
	return serve(ctx, addr, r, ready)
}

// serve runs h on addr until ctx ends, then shuts down gracefully.
func serve(ctx context.Context, addr string, h http.Handler, ready func(string)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	ready("http://" + ln.Addr().String())
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		return err
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
