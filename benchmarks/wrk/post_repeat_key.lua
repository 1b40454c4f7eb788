-- wrk script: like post_fresh_key.lua, but each idempotency key is sent 5 times in a row.
-- A thread's consecutive requests go out on different connections, so repeats of one key
-- reach the gateway concurrently: 1 accepted + 4 duplicates, all answered 200.
--
--   wrk -t2 -c64 -d10s --latency -s benchmarks/wrk/post_repeat_key.lua http://127.0.0.1:8080/webhooks/inbox

KEY_REPEAT = 5

-- wrk loads only one script; find the sibling next to this file, wherever wrk was run from.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "post_fresh_key.lua")
