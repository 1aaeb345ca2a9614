-- wrk script for scripts/bench.sh: the B3 headers of b3.lua, plus a bearer token on every request. With
-- BENCH_TOKEN set, every request carries that one token (a client reusing its token, as platform clients do for
-- its lifetime); with BENCH_TOKENS naming a file of tokens, one per line, each request takes the next one (a fresh
-- token per request, until the file runs out; then it starts over). The file is read before the run starts.
wrk.method = "GET"
wrk.headers["X-B3-TraceId"] = "463ac35c9f6413ad48485a3953bb6124"
wrk.headers["X-B3-SpanId"] = "a2fb4a1d1a96d312"
wrk.headers["X-B3-Sampled"] = "1"
wrk.headers["User-Agent"] = "wrk/4.1.0 (telemed-kit bench)"

local single = os.getenv("BENCH_TOKEN")

if single then
  -- Static headers, as in b3.lua: wrk builds the request once.
  wrk.headers["Authorization"] = "Bearer " .. single
else
  local tokens = {}
  for line in io.lines(os.getenv("BENCH_TOKENS")) do
    tokens[#tokens + 1] = "Bearer " .. line
  end
  if #tokens == 0 then
    error("BENCH_TOKENS names an empty file")
  end
  local next_token = 1
  function request()
    wrk.headers["Authorization"] = tokens[next_token]
    next_token = next_token % #tokens + 1
    return wrk.format()
  end
end
