-- wrk script: POST an InboxComponents message.received webhook, each with a fresh
-- idempotency key, so every request is a new event that the gateway must admit.
--
--   wrk -t2 -c64 -d10s --latency -s benchmarks/wrk/post_fresh_key.lua http://127.0.0.1:8080/webhooks/inbox
--
-- Environment (all optional):
--   WRK_PAYLOAD  path to a JSON payload with an "idempotency_key" (default: the seed below,
--                /work/shared/providers/inboxcomponents/message.received.json, byte for byte)
--   WRK_PATH     request path (default /webhooks/inbox)
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
