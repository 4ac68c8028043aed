-- wrk at (about) a fixed rate: each connection waits PACE_MS (default 1) ms after each
-- response before its next request, so with C connections the rate is about
-- C * 1000 / (PACE_MS + latency in ms). bench/run picks C for the rate it wants and
-- reports the rate served.
local pace = tonumber(os.getenv("PACE_MS") or "1")
function delay()
  return pace
end
