package ginmw_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/gin-gonic/gin"

	"github.com/raftsession/raftsession/adapter/ginmw"
	"github.com/raftsession/raftsession/httpmw"
	"github.com/raftsession/raftsession/session"
)

// The native session in gin: Incr is computed by the store, so concurrent
// requests never lose a count.
func ExampleSessions() {
	gin.SetMode(gin.ReleaseMode)
	mem := session.NewMemoryStore(session.MemoryOptions{})
	defer mem.Close()
	m, err := httpmw.New(mem, httpmw.Options{}) // over a cluster: node.Store()
	if err != nil {
		fmt.Println(err)
		return
	}
	r := gin.New()
	r.Use(ginmw.Sessions(m))
	r.POST("/views", func(c *gin.Context) {
		n, err := ginmw.Session(c).Incr(c.Request.Context(), "views", 1)
		if err != nil {
			c.String(httpmw.StatusCode(err), "try again")
			return
		}
		c.JSON(http.StatusOK, gin.H{"views": n})
	})
	var cookie *http.Cookie
	for range 2 {
		req := httptest.NewRequest("POST", "/views", nil)
		if cookie != nil {
			req.AddCookie(cookie)
		}
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
		cookie = rec.Result().Cookies()[0]
		fmt.Println(rec.Body.String())
	}
	// Output:
	// {"views":1}
	// {"views":2}
}
