-- wrk script: POST an InboxComponents message.received webhook, each with a fresh
-- idempotency key, so every request is a new event that the gateway must admit.
--
--   wrk -t2 -c64 -d10s --latency -s benchmarks/wrk/post_fresh_key.lua http://127.0.0.1:8080/webhooks/inbox
--
-- Environment (all optional):
--   WRK_PAYLOAD  path to a JSON payload with an "idempotency_key" (default: the seed below,
--                /work/shared/providers/inboxcomponents/message.received.json, byte for byte)
--   WRK_PATH     request path (default /webhooks/inbox)
--   WRK_PAD_TO   pad every body to exactly this many bytes (e.g. 1024, 65536) with a
--                "padding" string as the first member of the "data" object, so the body
--                stays valid JSON and the gateway forwards the padding with `data`
--   WRK_RATE     send at most this many requests per second in total (all threads), on
--                a fixed schedule: wrk has no rate option (wrk2 has), so each thread
--                claims the next slot of its own schedule (every WRK_THREADS/WRK_RATE s)
--                from delay() before each request; the delay is whole milliseconds, the
--                schedule exact, so the average rate is exact and a single send may be up
--                to 1 ms early or late. Latency is measured from the actual send (like
--                wrk, unlike wrk2: no coordinated-omission correction). A server slower
--                than the rate just gets requests back to back (at most 10 ms of catch-up).
--   WRK_THREADS  the -t given to wrk (default 1); needed with WRK_RATE only
-- Set KEY_REPEAT (a global) before loading this file to send each key that many times
-- (see post_repeat_key.lua).

local SEED = [==[
{
  "id": "0195f17d-0031-7b10-ac8b-454e0f57a85d",
  "event": "message.received",
  "data": {
    "conversation_id": "0195f0b1-5f4c-7bbe-8826-de31472446d0",
    "id": "0195f17d-0031-7b10-ac8b-454e0f57a85d",
    "modified_at": 1743513255,
    "date": 1743513245,
    "type": "whatsapp",
    "metadata": [],
    "attachments": [],
    "is_sent": false,
    "is_hidden": false,
    "is_event": false,
    "event_type": null,
    "account_id": "01951e90-1435-7169-8388-37827397b7a2",
    "inline_attachments": [],
    "body": "test",
    "from": [
      {
        "name": "Micheal Scott",
        "profilePicture": "example.com/picture.jpg"
      }
    ],
    "snippet": "test",
    "is_supported": true,
    "reactions": [],
    "quote": null,
    "deleted": false,
    "provider_id": "rhfds2435rasdd",
    "custom": []
  },
  "idempotency_key": "ae74038cfaa2ead7095ef0517ead67f58eeca1abeb8dc60fa7a39b3bdfb04793"
}]==]

local PATH = os.getenv("WRK_PATH") or "/webhooks/inbox"
local REPEAT = KEY_REPEAT or 1

-- Keys are 64 hex digits like the provider's (a SHA-256): a 48-digit random prefix per
-- thread, then a 16-digit counter. A fixed length keeps Content-Length constant, so the
-- whole request can be prebuilt around the key once.
local PLACEHOLDER = string.rep("0", 64)
local PREFIX_DIGITS = 48

local function read_file(path)
   local f = assert(io.open(path, "rb"))
   local data = f:read("*a")
   f:close()
   return data
end

-- /dev/urandom, not os.time(): two runs started within the same second (warm-up, then
-- the measured run, against the same Redis) must not send each other's keys.
local function random_hex(digits, salt)
   local f = io.open("/dev/urandom", "rb")
   if f then
      local bytes = f:read(digits / 2)
      f:close()
      return (bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end))
   end
   math.randomseed(os.time() * 1000 + salt)
   local out = {}
   for i = 1, digits do out[i] = string.format("%x", math.random(0, 15)) end
   return table.concat(out)
end

local function with_placeholder_key(body)
   local s, e = body:find('"idempotency_key"%s*:%s*"[^"]*"')
   assert(s, "payload has no \"idempotency_key\" string")
   return body:sub(1, s - 1) .. '"idempotency_key":"' .. PLACEHOLDER .. '"' .. body:sub(e + 1)
end

-- `"padding":"xxx...",` opens the "data" object: 13 bytes plus the filler.
local function padded(body, size)
   local filler = size - #body - 13
   assert(filler >= 0, "WRK_PAD_TO=" .. size .. " is smaller than the payload (" .. #body .. ")")
   local _, e = body:find('"data"%s*:%s*{')
   assert(e, "payload has no \"data\" object to pad")
   return body:sub(1, e) .. '"padding":"' .. string.rep("x", filler) .. '",' .. body:sub(e + 1)
end

-- Pacing (WRK_RATE): a monotonic clock in milliseconds through LuaJIT's FFI.
local RATE = tonumber(os.getenv("WRK_RATE") or "")
local now_ms
if RATE then
   local ffi = require("ffi")
   ffi.cdef [[
      typedef struct { long tv_sec; long tv_nsec; } wrk_bench_timespec;
      int clock_gettime(int clk_id, wrk_bench_timespec *tp);
   ]]
   local ts = ffi.new("wrk_bench_timespec")
   local CLOCK_MONOTONIC = 1
   now_ms = function()
      ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
      return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
   end
end
local CATCH_UP_MS = 10

local threads = 0
function setup(thread)
   threads = threads + 1
   thread:set("thread_id", threads)
end

local head, tail
local sent = 0

function init(args)
   local payload_path = os.getenv("WRK_PAYLOAD")
   local body = with_placeholder_key(payload_path and read_file(payload_path) or SEED)
   local pad_to = tonumber(os.getenv("WRK_PAD_TO") or "")
   if pad_to then body = padded(body, pad_to) end
   local req = wrk.format("POST", PATH, { ["Content-Type"] = "application/json" }, body)
   local s, e = req:find(PLACEHOLDER, 1, true)
   local prefix = random_hex(PREFIX_DIGITS, thread_id or 0)
   head = req:sub(1, s - 1) .. prefix
   tail = req:sub(e + 1)
end

function request()
   local n = math.floor(sent / REPEAT)
   sent = sent + 1
   return head .. string.format("%016d", n) .. tail
end

if RATE then
   assert(RATE > 0, "WRK_RATE must be positive")
   local interval = 1000 * (tonumber(os.getenv("WRK_THREADS") or "1")) / RATE
   local slot

   -- Called before every request (wrk then waits that many whole ms): claim the next
   -- slot of this thread's schedule and wait until it comes.
   function delay()
      local now = now_ms()
      slot = slot and math.max(slot + interval, now - CATCH_UP_MS) or now
      local wait = slot - now
      return wait > 0 and math.floor(wait + 0.5) or 0
   end
end
