-- wrk script for bench/run.py: GET the tracking pixel as a mail client (or its image proxy) fetches it
-- when an email is opened: no body, the event in the query string, one unique mid per request.
--
--   wrk -t1 -c50 -d10s --latency -s bench/get_pixel.lua http://127.0.0.1:PORT/v1/pixel/track -- <pipeline key> <run tag>
--
-- The pixel answers its GIF even when it drops the event (a bad key, Kafka down): a 2xx here is not
-- proof of a record, which is why run.py reconciles against Kafka. The response hook counts every
-- status outside 2xx (wrk's own counter only sees >= 400), and done() prints one "BENCH_RESULT {json}"
-- line with exact counts for run.py.

local threads = {}
local next_id = 0

function setup(thread)
   next_id = next_id + 1
   thread:set("thread_id", next_id)
   table.insert(threads, thread)
end

local sent = 0
local RECIPIENTS = 20000

-- Filled in init(): the URL around the parts that change per request.
local head, before_mid, before_ts, before_cb

function init(args)
   local key = args[1] or ""
   local tag = args[2] or "run"
   non2xx = 0
   statuses = {}
   wrk.method = "GET"
   wrk.body = nil
   wrk.headers["User-Agent"] = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
   wrk.headers["Accept"] = "image/avif,image/webp,image/apng,image/*,*/*;q=0.8"
   wrk.headers["Accept-Encoding"] = "gzip, deflate, br"
   -- wrk.path is the path given on the command line (/v1/pixel/track).
   head = wrk.path .. "?wk=" .. key .. "&e=Email%20Opened&uid="
   before_mid = "&p.campaign=nov&mid=px-" .. tag .. "-" .. thread_id .. "-"
   before_ts = "&ts="
   before_cb = "&cb="
end

function request()
   sent = sent + 1
   local uid = (sent * 7919) % RECIPIENTS
   -- ts: when the mail was rendered, in unix milliseconds; cb: the cache buster mail tools add.
   local ts = string.format("%d", os.time() * 1000 + sent % 1000)
   local path = head .. uid .. before_mid .. sent .. before_ts .. ts .. before_cb .. (sent * 2654435761) % 4294967296
   return wrk.format("GET", path)
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
