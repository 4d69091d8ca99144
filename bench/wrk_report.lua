-- Shared by the wrk scripts of bench/run.py (loaded with dofile from each): thread bookkeeping, a
-- response hook that counts every status outside 2xx (wrk's own counter only sees >= 400) and every
-- 2xx batch answer that rejected some events ("partial"), and done(), which prints one
-- "BENCH_RESULT {json}" line with exact counts for run.py to reconcile against Kafka.

local threads = {}
local next_id = 0

function setup(thread)
   next_id = next_id + 1
   thread:set("thread_id", next_id)
   table.insert(threads, thread)
end

-- Each script's init() calls this first.
function reset_counters()
   non2xx = 0
   partial = 0
   statuses = {}
end

function response(status, headers, body)
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
      local name = tostring(status)
      statuses[name] = (statuses[name] or 0) + 1
   elseif body and body:find('"rejected":', 1, true) and not body:find('"rejected":0', 1, true) then
      partial = partial + 1  -- a batch answer from the gateway; other answers say nothing of rejections
   end
end

function done(summary, latency, requests)
   local non2xx_total, partial_total = 0, 0
   local by_status = {}
   for _, thread in ipairs(threads) do
      non2xx_total = non2xx_total + (thread:get("non2xx") or 0)
      partial_total = partial_total + (thread:get("partial") or 0)
      for name, count in pairs(thread:get("statuses") or {}) do
         by_status[name] = (by_status[name] or 0) + count
      end
   end
   local parts_out = {}
   for name, count in pairs(by_status) do
      table.insert(parts_out, string.format('"%s":%d', name, count))
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,"non2xx":%d,"partial":%d,"statuses":{%s},'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
      summary.requests, summary.duration, summary.bytes, non2xx_total, partial_total, table.concat(parts_out, ","),
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
