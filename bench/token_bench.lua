-- wrk script of bench/token_bench.py: one scenario against one server.
--
--   wrk -t T -c C -d D -s bench/token_bench.lua URL -- METHOD PATH BODIES AUTH PROGRESS T EXPECT
--
-- METHOD    GET or POST
-- PATH      request path (/oidc/token, /oidc/jwks)
-- BODIES    "-" for no body, "@FILE" for a file of request bodies (one per line) that
--           the threads share out without ever sending one twice (thread i of T sends
--           lines i, i+T, i+2T, ...), or "=BODY" for the same body on every request
-- AUTH      "-" or an Authorization header value
-- PROGRESS  "-" or a path prefix: each thread writes its response count to PREFIX<id>
--           every 200 responses (token_bench.py polls them for the replay check)
-- T         the number of wrk threads (-t)
-- EXPECT    the expected status; any other status counts as an error
--
-- done() prints one line "TOKEN_BENCH_RESULT {json}" with the counts, the per-thread
-- number of bodies consumed, and the latency percentiles in microseconds.
--
-- Note: wrk calls request() once in the first thread's state to check the script before
-- the run, so that thread's first body is consumed without being sent (token_bench.py
-- knows; the replay check never re-sends that line).

local threads = {}
local next_id = 1

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

-- Per-thread state: globals, so that done() can read them with thread:get().
bodies = nil -- this thread's share of the bodies file
fixed_body = nil
used = 0
exhausted = 0
responses = 0
unexpected = 0
statuses = {}
progress_path = nil
expect = 200
headers = {}
method = "GET"
path = "/"

function init(args)
  method, path = args[1], args[2]
  local source, auth, progress = args[3], args[4], args[5]
  local nthreads = tonumber(args[6])
  expect = tonumber(args[7])
  if auth ~= "-" then
    headers["Authorization"] = auth
  end
  if method == "POST" then
    headers["Content-Type"] = "application/x-www-form-urlencoded"
  end
  if progress ~= "-" then
    progress_path = progress .. id
  end
  if source:sub(1, 1) == "@" then
    bodies = {}
    local line_no = 0
    for line in io.lines(source:sub(2)) do
      if line_no % nthreads == id - 1 then
        bodies[#bodies + 1] = line
      end
      line_no = line_no + 1
    end
  elseif source:sub(1, 1) == "=" then
    fixed_body = source:sub(2)
  end
end

function request()
  local body = fixed_body
  if bodies then
    if used < #bodies then
      used = used + 1
      body = bodies[used]
    else
      -- Never send a body twice: stop this thread, and say so in the result.
      exhausted = 1
      wrk.thread:stop()
      body = bodies[#bodies]
    end
  end
  return wrk.format(method, path, headers, body)
end

local function write_progress()
  local handle = io.open(progress_path, "w")
  if handle then
    handle:write(tostring(responses))
    handle:close()
  end
end

function response(status, response_headers, body)
  responses = responses + 1
  if status ~= expect then
    unexpected = unexpected + 1
  end
  statuses[status] = (statuses[status] or 0) + 1
  if progress_path and responses % 200 == 0 then
    write_progress()
  end
end

local function status_string(counts)
  local parts = {}
  for status, count in pairs(counts or {}) do
    parts[#parts + 1] = string.format('"%d":%d', status, count)
  end
  return table.concat(parts, ",")
end

function done(summary, latency, requests)
  local parts = {}
  for _, thread in ipairs(threads) do
    parts[#parts + 1] = string.format(
      '{"id":%d,"used":%d,"exhausted":%d,"responses":%d,"unexpected":%d,"statuses":{%s}}',
      thread:get("id"), thread:get("used"), thread:get("exhausted"), thread:get("responses"),
      thread:get("unexpected"), status_string(thread:get("statuses")))
  end
  local e = summary.errors
  io.write(string.format(
    'TOKEN_BENCH_RESULT {"duration_us":%d,"requests":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"mean":%.1f,"max":%d},"threads":[%s]}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max, table.concat(parts, ",")))
end
