-- wrk script for bench/run.py: POST /v1/batch with 100 Segment-style events per request, as Segment's
-- server SDKs (analytics-python) send them: {"batch": [...], "sentAt": ...}, application/json, and
-- Authorization: Basic base64("<key>:"). A mix of track (60%), page (25%) and identify (15%) calls,
-- ~600 bytes each, every one with its own messageId: py-<tag>-<thread>-<request>-<index>.
--
--   wrk -t1 -c50 -d10s --latency -s bench/post_batch.lua http://127.0.0.1:PORT/v1/batch -- <pipeline key> <run tag>
--
-- The response hook counts every status outside 2xx (wrk's own counter only sees >= 400) and every
-- 2xx batch that rejected some of its events ("partial"); done() prints one "BENCH_RESULT {json}"
-- line with exact counts for run.py to reconcile against Kafka (one answered batch = 100 records).

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "wrk_report.lua")

local EVENTS = 100
local USERS = 5000
local sent = 0

-- Filled in init(): per event index, the JSON before the user id and between the user id and the
-- messageId's request counter; the request body is assembled from these and the changing parts.
local before_user, before_counter, after_index = {}, {}, {}
local parts = {}
local body_head, body_tail

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(text)
   local out = {}
   for i = 1, #text, 3 do
      local a, b, c = text:byte(i, i + 2)
      local n = a * 65536 + (b or 0) * 256 + (c or 0)
      local chars = {}
      for k = 1, 4 do
         local sextet = math.floor(n / 64 ^ (4 - k)) % 64
         chars[k] = B64:sub(sextet + 1, sextet + 1)
      end
      if not b then chars[3] = "=" end
      if not c then chars[4] = "=" end
      table.insert(out, table.concat(chars))
   end
   return table.concat(out)
end

-- Fields every event's properties (or traits) end with, as a backend's shared helper would add them.
local COMMON = ',"app_version":"4.18.2","environment":"production"}'

local LIBRARY = '"context":{"library":{"name":"analytics-python","version":"2.3.2"}},"integrations":{}'

local TRACK = {
   {
      "Order Completed",
      '{"order_id":"ord-7f3a9c21","checkout_id":"chk-55e1b0","total":142.48,"revenue":129.99,"shipping":7.5,'
         .. '"tax":4.99,"currency":"USD","coupon":"AUTUMN10","products":[{"product_id":"sku-48213","sku":"TS-48213-42",'
         .. '"name":"Trail Shoe","category":"Footwear","price":129.99,"quantity":1}]' .. COMMON,
   },
   {
      "Subscription Renewed",
      '{"plan":"team-annual","seats":12,"amount":1188.0,"currency":"EUR","billing_cycle":"yearly",'
         .. '"payment_method":"card","card_brand":"visa","invoice_id":"in_1P8x2fKq7Hc3","previous_plan":"team-monthly",'
         .. '"trial":false,"renewal_count":3,"account_id":"acct-20931","region":"eu-west-1"' .. COMMON,
   },
   {
      "Report Exported",
      '{"report_id":"rep-00912","report_type":"funnel","format":"csv","rows":18234,"columns":14,'
         .. '"filters":{"date_range":"last_30_days","segment":"paid-users","country":"DE"},"duration_ms":2318,'
         .. '"workspace_id":"ws-8812","requested_via":"api","api_version":"2024-05-01"' .. COMMON,
   },
}

local PAGE = {
   "Pricing",
   '{"path":"/pricing","url":"https://www.northpeak.example/pricing?plan=team&utm_source=newsletter",'
      .. '"title":"Pricing | Northpeak","referrer":"https://mail.google.com/","search":"?plan=team&utm_source=newsletter",'
      .. '"category":"marketing","rendered_by":"server","experiment":"pricing-v3","variant":"b","load_ms":412' .. COMMON,
}

local IDENTIFY_TRAITS = '{"email":"customer@example.com","name":"Ada Lovelace","first_name":"Ada","last_name":"Lovelace",'
   .. '"plan":"team-annual","company":{"id":"acct-20931","name":"Analytical Engines Ltd","industry":"Software",'
   .. '"employees":42},"created_at":"2023-03-14T09:26:53.000Z","phone":"+44 20 7946 0958","locale":"en-GB",'
   .. '"timezone":"Europe/London"' .. COMMON

function init(args)
   local key = args[1] or ""
   local tag = args[2] or "run"
   reset_counters()
   wrk.method = "POST"
   wrk.headers["Authorization"] = "Basic " .. base64(key .. ":")
   wrk.headers["Content-Type"] = "application/json"
   wrk.headers["User-Agent"] = "analytics-python/2.3.2"
   wrk.headers["Accept-Encoding"] = "gzip, deflate"
   local now = os.time()
   local sent_at = os.date("!%Y-%m-%dT%H:%M:%S.900000+00:00", now)
   -- The events were queued over the last second or so: each its own time, before sentAt.
   local second = os.date("!%Y-%m-%dT%H:%M:%S", now - 1)
   local message_prefix = '","messageId":"py-' .. tag .. "-" .. thread_id .. "-"
   for i = 1, EVENTS do
      local slot = i % 20
      local timestamp = string.format("%s.%06d+00:00", second, (i * 9137) % 1000000)
      local head
      local anonymous = false
      if slot < 12 then
         local track = TRACK[i % #TRACK + 1]
         anonymous = slot % 4 == 0
         head = '{"type":"track","event":"' .. track[1] .. '","properties":' .. track[2]
      elseif slot < 17 then
         anonymous = slot == 16
         head = '{"type":"page","name":"' .. PAGE[1] .. '","category":"Marketing","properties":' .. PAGE[2]
      else
         head = '{"type":"identify","traits":' .. IDENTIFY_TRAITS
      end
      head = head .. "," .. LIBRARY .. ',"timestamp":"' .. timestamp .. '",'
      if anonymous then
         before_user[i] = head .. '"userId":null,"anonymousId":"9c2f4e1a-6b3d-4f8e-a7c5-'
      else
         before_user[i] = head .. '"anonymousId":null,"userId":"user-'
      end
      before_counter[i] = message_prefix
      after_index[i] = '"}'
   end
   body_head = '{"batch":['
   body_tail = '],"sentAt":"' .. sent_at .. '"}'
end

function request()
   sent = sent + 1
   for i = 1, EVENTS do
      local user = string.format("%012d", (sent * 7 + i * 13) % USERS)
      parts[i] = before_user[i] .. user .. before_counter[i] .. sent .. "-" .. i .. after_index[i]
   end
   return wrk.format(nil, nil, nil, body_head .. table.concat(parts, ",") .. body_tail)
end
