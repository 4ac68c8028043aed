-- wrk script for bench/run's pipelined section (the TechEmpower plaintext shape): every
-- write carries DEPTH (default 16) requests back to back, and the connection writes its
-- next batch once the last response of the previous one is in. wrk parses the string
-- `request` returns when it starts, counts the requests in it and expects that many
-- responses per write: its "requests" and "Requests/sec" count responses (16 per write),
-- its latency is per batch (the write to the last of its responses), so bench/run
-- reports requests/s only for this section.
local depth = tonumber(os.getenv("PIPELINE_DEPTH") or "16")
local batch

function init(args)
   local requests = {}
   for i = 1, depth do
      requests[i] = wrk.format()
   end
   batch = table.concat(requests)
end

function request()
   return batch
end
