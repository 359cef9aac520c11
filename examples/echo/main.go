package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/labstack/echo-contrib/session"
	"github.com/labstack/echo/v4"

	"github.com/raftsession/raftsession/adapter/gorillastore"
	"github.com/raftsession/raftsession/httpmw"
	rsession "github.com/raftsession/raftsession/session"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8070", "listen address")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, func(url string) { log.Printf("listening on %s", url) }); err != nil {
		log.Fatal(err)
	}
}

// run serves the app on addr until ctx ends, calling ready with its URL.
func run(ctx context.Context, addr string, ready func(url string)) error {
	mem := rsession.NewMemoryStore(rsession.MemoryOptions{})
	defer mem.Close()
	store, err := gorillastore.NewStore(mem) // no key: a random one of this process
	if err != nil {
		return err
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.Use(session.Middleware(store))
	e.POST("/cart", func(c echo.Context) error {
		sess, err := session.Get("app", c)
		if err != nil {
			return err
		}
		items, _ := sess.Values["cart"].([]string)
		sess.Values["cart"] = append(items, c.QueryParam("item"))
		if err := sess.Save(c.Request(), c.Response()); err != nil {
			return echo.NewHTTPError(httpmw.StatusCode(err), "try again")
		}
		return c.JSON(http.StatusOK, sess.Values["cart"])
	})
	e.GET("/", func(c echo.Context) error {
		sess, err := session.Get("app", c)
		if err != nil {
			return err
		}
		items, _ := sess.Values["cart"].([]string)
		return c.JSON(http.StatusOK, map[string]any{"cart": items})
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	e.Listener = ln
	done := make(chan error, 1)
	go func() { done <- e.Start("") }()
	ready("http://" + ln.Addr().String())
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	if err := e.Shutdown(context.Background()); err != nil {
		return err
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
