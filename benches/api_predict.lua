-- wrk script: POST /predict with the reference operating point.
-- PACE_MS (environment, optional): each connection waits this long after
-- every answer before its next request. wrk 4 has no constant-rate mode, so
-- a request rate R over C connections is approximated by
-- R = C / (PACE_MS + answer time); wrk reports the rate it achieved.
wrk.method = "POST"
wrk.body = '{"UCWIT":7.5,"UCAIT":25.0,"UCWF":15.0,"UCAIH":50.0,"AMBT":22.0,"UCTSP":21.0}'
wrk.headers["Content-Type"] = "application/json"

local token = os.getenv("TWINFLOW_API_TOKEN")
if token and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end

local pace = tonumber(os.getenv("PACE_MS") or "0")
if pace > 0 then
  function delay()
    return pace
  end
end

local non200 = 0
function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
  end
end

function done(summary, latency, requests)
  io.write(string.format("requests %d, errors %d, p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms, max %.3f ms\n",
    summary.requests,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency:percentile(99.9) / 1000, latency.max / 1000))
end
