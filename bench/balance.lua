-- wrk script for bench/run: counts the responses by the worker that served them (the
-- `x-worker-pid` header) and prints one line `served pid=<pid> requests=<n>` per worker.
-- Defining `response` makes wrk parse every response's headers, which costs throughput:
-- this script is for the balance runs only, never for the requests/s ones.

counts = {}

function response(status, headers, body)
   local pid = headers["x-worker-pid"] or "none"
   counts[pid] = (counts[pid] or 0) + 1
end

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function done(summary, latency, requests)
   local total = {}
   for _, thread in ipairs(threads) do
      for pid, n in pairs(thread:get("counts")) do
         total[pid] = (total[pid] or 0) + n
      end
   end
   for pid, n in pairs(total) do
      io.write(string.format("served pid=%s requests=%d\n", pid, n))
   end
end
