// Command scsredis is the benchmark peer: the demo routes on
// github.com/alexedwards/scs/v2 with scs/redisstore over a redigo pool.
package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/alexedwards/scs/redisstore"
	"github.com/alexedwards/scs/v2"
	"github.com/gomodule/redigo/redis"

	"github.com/raftsession/raftsession/bench/internal/scsapp"
)

func main() {
	scsapp.Main("scsredis", func(fs *flag.FlagSet) func() (*scs.SessionManager, func(), error) {
		addr := fs.String("redis", "127.0.0.1:6379", "redis-server address")
		// Enough idle connections for the largest benchmark concurrency, so
		// the peer is not measured redialling redis (a common pool mistake).
		maxIdle := fs.Int("redis-max-idle", 128, "redigo pool MaxIdle")
		return func() (*scs.SessionManager, func(), error) {
			pool := &redis.Pool{
				MaxIdle:     *maxIdle,
				IdleTimeout: 4 * time.Minute,
				Dial:        func() (redis.Conn, error) { return redis.Dial("tcp", *addr) },
			}
			c := pool.Get()
			_, err := c.Do("PING")
			c.Close()
			if err != nil {
				pool.Close()
				return nil, nil, fmt.Errorf("redis %s: %w", *addr, err)
			}
			sm := scs.New()
			sm.Store = redisstore.New(pool)
			return sm, func() { pool.Close() }, nil
		}
	})
}
