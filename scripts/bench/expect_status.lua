-- Appended to wrk.lua when a run expects a status other than 2xx (GET /nope
-- expects 404, which wrk's own count would call errors): counts the responses
-- whose status differs. Defining `response` makes wrk parse every response, so
-- it is only added where needed.
local threads = {}

function setup(thread)
   threads[#threads + 1] = thread
end

unexpected = 0

function response(status, headers, body)
   if status ~= expected_status then
      unexpected = unexpected + 1
   end
end

function unexpected_statuses()
   local total = 0
   for _, thread in ipairs(threads) do
      total = total + thread:get("unexpected")
   end
   return tostring(total)
end
