package cluster

import "time"

func setIdleTimeouts(time.Duration) func() { return func() {} }
