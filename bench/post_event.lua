-- wrk script for bench/run.py: POST a ~630-byte Segment-style track event, as analytics.js sends it
-- (text/plain, so the browser skips the CORS preflight), one unique messageId per request.
--
--   wrk -t1 -c50 -d10s --latency -s bench/post_event.lua http://127.0.0.1:PORT/v1/t -- <pipeline key> <run tag>
--
-- The response hook counts every status outside 2xx (wrk's own counter only sees >= 400), and done()
-- prints one "BENCH_RESULT {json}" line with exact counts for run.py to reconcile against Kafka.

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "wrk_report.lua")

local key, tag
local sent = 0
local VISITORS = 1000

-- Filled in init(): the event around the three parts that change per request.
local head, mid, tail

function init(args)
   key = args[1] or ""
   tag = args[2] or "run"
   reset_counters()
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
