-- wrk script for scripts/bench.sh: every request carries an accepted B3 context, so that the kit samples and
-- exports a span for each one. The headers are static (set once, no per-request Lua work); the server does
-- the same parsing and span work whatever the ids are. Both servers get the same request bytes.
wrk.method = "GET"
wrk.headers["X-B3-TraceId"] = "463ac35c9f6413ad48485a3953bb6124"
wrk.headers["X-B3-SpanId"] = "a2fb4a1d1a96d312"
wrk.headers["X-B3-Sampled"] = "1"
wrk.headers["User-Agent"] = "wrk/4.1.0 (telemed-kit bench)"
