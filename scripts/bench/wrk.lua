-- The benchmark's wrk script. Arguments after `--`: method, path, body ("" for
-- none), expected status ("2xx", or a number such as 404), then the access tokens
-- to rotate over (none for the pass-through). Prints one WRK_RESULT JSON line.
local requests = {}
local next_request = 0

function init(args)
   local method, path, body = args[1], args[2], args[3]
   if body == "" then
      body = nil
   end
   expected_status = tonumber(args[4])
   local function format(token)
      local headers = {}
      if body then
         headers["Content-Type"] = "application/json"
      end
      if token then
         headers["Authorization"] = "Bearer " .. token
      end
      return wrk.format(method, path, headers, body)
   end
   for i = 5, #args do
      requests[#requests + 1] = format(args[i])
   end
   if #requests == 0 then
      requests[1] = format(nil)
   end
end

function request()
   next_request = next_request % #requests + 1
   return requests[next_request]
end

-- Replaced by expect_status.lua when a status other than 2xx is expected.
function unexpected_statuses()
   return "null"
end

function done(summary, latency, requests)
   local errors = summary.errors
   io.write(string.format(
      'WRK_RESULT {"requests": %d, "duration_us": %d, "p50_us": %.0f, '
         .. '"p99_us": %.0f, "connect": %d, "read": %d, "write": %d, '
         .. '"timeout": %d, "status": %d, "unexpected_status": %s}\n',
      summary.requests, summary.duration,
      latency:percentile(50), latency:percentile(99),
      errors.connect, errors.read, errors.write, errors.timeout, errors.status,
      unexpected_statuses()))
end
