// Package echomw uses raftsession with echo (github.com/labstack/echo/v4)
// in either of two ways.
//
// The native session (per-key merge, Incr, CompareAndSwap, Regenerate,
// owners, read-your-writes across instances) through httpmw, whose
// middleware echo wraps as it is:
//
//	m, err := httpmw.New(node.Store(), httpmw.Options{})
//	e.Use(echomw.Sessions(m)) // echo.WrapMiddleware(m.Handler)
//	e.POST("/views", func(c echo.Context) error {
//		n, err := echomw.Session(c).Incr(c.Request().Context(), "views", 1)
//		...
//	})
//
// Or echo-contrib/session, unchanged, over adapter/gorillastore:
//
//	store, err := gorillastore.NewStore(node.Store())
//	e.Use(session.Middleware(store))
//
// With the native session, a handler that returns an error has its
// session changes committed before echo's error handler writes the error
// response (as a net/http handler's are when it writes an error page); a
// commit that fails answers with httpmw's ErrorHandler (503 while the
// store is unavailable) and the error response is dropped. With
// echo-contrib, only what the handler saved with sess.Save is stored.
package echomw
