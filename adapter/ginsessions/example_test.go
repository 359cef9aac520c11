package ginsessions_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/gin-contrib/sessions"
	"github.com/gin-gonic/gin"

	"github.com/raftsession/raftsession/adapter/ginsessions"
	"github.com/raftsession/raftsession/session"
)

// A gin app keeps using gin-contrib/sessions; only the store changes
// (node.Store() on a cluster, with no key: the cluster provides it).
func ExampleNewStore() {
	gin.SetMode(gin.ReleaseMode)
	mem := session.NewMemoryStore(session.MemoryOptions{})
	defer mem.Close()
	store, err := ginsessions.NewStore(mem)
	if err != nil {
		fmt.Println(err)
		return
	}
	r := gin.New()
	r.Use(sessions.Sessions("app", store))
	r.POST("/login", func(c *gin.Context) {
		s := sessions.Default(c)
		s.Set("user", "alice")
		if err := s.Save(); err != nil {
			c.AbortWithStatus(http.StatusServiceUnavailable)
			return
		}
	})
	r.GET("/", func(c *gin.Context) {
		c.String(http.StatusOK, "hello %v", sessions.Default(c).Get("user"))
	})

	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest("POST", "/login", nil))
	req := httptest.NewRequest("GET", "/", nil)
	req.AddCookie(rec.Result().Cookies()[0])
	rec = httptest.NewRecorder()
	r.ServeHTTP(rec, req)
	fmt.Println(rec.Body.String())
	// Output: hello alice
}
