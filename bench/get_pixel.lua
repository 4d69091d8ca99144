-- wrk script for bench/run.py: GET the tracking pixel as a mail client (or its image proxy) fetches it
-- when an email is opened: no body, the event in the query string, one unique mid per request.
--
--   wrk -t1 -c50 -d10s --latency -s bench/get_pixel.lua http://127.0.0.1:PORT/v1/pixel/track -- <pipeline key> <run tag>
--
-- The pixel answers its GIF even when it drops the event (a bad key, Kafka down): a 2xx here is not
-- proof of a record, which is why run.py reconciles against Kafka. The response hook counts every
-- status outside 2xx (wrk's own counter only sees >= 400), and done() prints one "BENCH_RESULT {json}"
-- line with exact counts for run.py.

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "wrk_report.lua")

local sent = 0
local RECIPIENTS = 20000

-- Filled in init(): the URL around the parts that change per request.
local head, before_mid, before_ts, before_cb

function init(args)
   local key = args[1] or ""
   local tag = args[2] or "run"
   reset_counters()
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
