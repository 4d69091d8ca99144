-- wrk script for bench/run.py: POST a ~630-byte Segment-style track event, as analytics.js sends it
-- (text/plain, so the browser skips the CORS preflight), one unique messageId per request.
--
--   wrk -t1 -c50 -d10s --latency -s bench/post_event.lua http://127.0.0.1:PORT/v1/t -- <pipeline key> <run tag>
--
-- The response hook counts every status outside 2xx (wrk's own counter only sees >= 400), and done()
-- prints one "BENCH_RESULT {json}" line with exact counts for run.py to reconcile against Kafka.

local threads = {}
local next_id = 0

function setup(thread)
   next_id = next_id + 1
   thread:set("thread_id", next_id)
   table.insert(threads, thread)
end

local key, tag
local sent = 0
local VISITORS = 1000

-- Filled in init(): the event around the three parts that change per request.
local head, mid, tail

function init(args)
   key = args[1] or ""
   tag = args[2] or "run"
   non2xx = 0
   statuses = {}
   wrk.method = "POST"
   wrk.headers["Authorization"] = "Bearer " .. key
   wrk.headers["Content-Type"] = "text/plain"
   wrk.headers["Origin"] = "https://shop.example.com"
   wrk.headers["User-Agent"] = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
   local now = os.time()
   local sent_at = os.date("!%Y-%m-%dT%H:%M:%S.250Z", now)
   local timestamp = os.date("!%Y-%m-%dT%H:%M:%S.120Z", now)
   head = '{"type":"track","event":"Product Added",'
      .. '"properties":{"product_id":"sku-48213","name":"Trail Shoe","price":129.99,"currency":"USD"},'
      .. '"anonymousId":"3f6b1d2e-8c4a-4e7b-9b1f-'
   mid = '","messageId":"ajs-' .. tag .. "-" .. thread_id .. "-"
   tail = '","timestamp":"' .. timestamp .. '","sentAt":"' .. sent_at .. '",'
      .. '"context":{"library":{"name":"analytics.js","version":"5.2.0"},'
      .. '"page":{"path":"/p/trail-shoe","referrer":"https://www.google.com/","title":"Trail Shoe | Northpeak",'
      .. '"url":"https://shop.example.com/p/trail-shoe?utm_source=google"},'
      .. '"userAgent":"' .. wrk.headers["User-Agent"] .. '"}}'
end

function request()
   sent = sent + 1
   local visitor = string.format("%012d", sent % VISITORS)
   return wrk.format(nil, nil, nil, head .. visitor .. mid .. sent .. tail)
end

function response(status, headers, body)
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
      local name = tostring(status)
      statuses[name] = (statuses[name] or 0) + 1
   end
end

function done(summary, latency, requests)
   local non2xx_total = 0
   local by_status = {}
   for _, thread in ipairs(threads) do
      non2xx_total = non2xx_total + (thread:get("non2xx") or 0)
      for name, count in pairs(thread:get("statuses") or {}) do
         by_status[name] = (by_status[name] or 0) + count
      end
   end
   local parts = {}
   for name, count in pairs(by_status) do
      table.insert(parts, string.format('"%s":%d', name, count))
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,"non2xx":%d,"statuses":{%s},'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
      summary.requests, summary.duration, summary.bytes, non2xx_total, table.concat(parts, ","),
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
