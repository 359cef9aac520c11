module github.com/raftsession/raftsession/bench

go 1.26

require (
	github.com/alexedwards/scs/redisstore v0.0.0-20251002162104-209de6e426de
	github.com/alexedwards/scs/v2 v2.9.0
	github.com/gomodule/redigo v1.8.0
	github.com/raftsession/raftsession v0.0.0-00010101000000-000000000000
)

replace github.com/raftsession/raftsession => ..
