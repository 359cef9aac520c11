// Package ginmw gives gin handlers raftsession's native session: the
// httpmw middleware as a gin.HandlerFunc, with every feature of
// session.Session (per-key merge, Incr, CompareAndSwap, Regenerate,
// owners and "log out everywhere", read-your-writes across instances).
//
//	m, err := httpmw.New(node.Store(), httpmw.Options{}) // keys from the cluster
//	r := gin.New()
//	r.Use(ginmw.Sessions(m))
//	r.POST("/views", func(c *gin.Context) {
//		n, err := ginmw.Session(c).Incr(c.Request.Context(), "views", 1)
//		...
//	})
//
// The session is committed before gin writes any byte of the response:
// on the handler's first WriteHeader, Write, WriteString, WriteHeaderNow,
// Flush or Hijack through c.Writer, or when the handlers return. When the
// commit fails, httpmw's ErrorHandler answers (503 while the store is
// unavailable; see httpmw.StatusCode) instead of the handler, and the
// chain is aborted.
package ginmw
