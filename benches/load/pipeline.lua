-- wrk script of the `faults` scenario's pipelined runs: each write carries PIPELINE_DEPTH
-- (default 16) keep-alive requests of `/` (HTTP/1.1 pipelining), so the client and the
-- backend spend less per request and the proxies in between, which move the bytes of each
-- write as they come, are what the rate measures. wrk counts every response.
local depth = tonumber(os.getenv("PIPELINE_DEPTH") or "16")

init = function(args)
   local requests = {}
   for index = 1, depth do
      requests[index] = wrk.format(nil, "/")
   end
   batch = table.concat(requests)
end

request = function()
   return batch
end
