-- W1 for wrk: GET one session value with the cookie given as the script
-- argument:  wrk -s bench/wrk/w1.lua http://HOST:PORT -- 'sid=...'
-- scripts/bench runs it once per full run to show that bench/loadgen
-- reaches the same rate as wrk.
function init(args)
  wrk.method = "GET"
  wrk.path = "/api/session/values/greeting"
  wrk.headers["Cookie"] = args[1]
end

done = function(summary, latency, requests)
  io.write(string.format("WRK_RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f non2xx=%d errors=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
