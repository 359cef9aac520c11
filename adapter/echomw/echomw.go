package echomw

import (
	"github.com/labstack/echo/v4"

	"github.com/raftsession/raftsession/httpmw"
	"github.com/raftsession/raftsession/session"
)

// Sessions is httpmw's middleware for echo: echo.WrapMiddleware(m.Handler).
func Sessions(m *httpmw.Manager) echo.MiddlewareFunc {
	return echo.WrapMiddleware(m.Handler)
}

// Session returns the request's session, or nil when the request did not
// pass through [Sessions].
func Session(c echo.Context) *session.Session {
	return httpmw.FromContext(c.Request().Context())
}
