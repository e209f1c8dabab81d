-- report.lua - appended to every wrk script of bench/load: one JSON line
-- with the counts and latency percentiles (microseconds) for load.py.
function done(summary, latency, requests)
	local e = summary.errors
	io.write(string.format(
		'\nLOADJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
		'"errors":%d,"status_errors":%d,"mean":%.2f,' ..
		'"p50":%d,"p90":%d,"p99":%d,"max":%d}\n',
		summary.requests, summary.duration, summary.bytes,
		e.connect + e.read + e.write + e.timeout, e.status, latency.mean,
		latency:percentile(50), latency:percentile(90), latency:percentile(99),
		latency.max))
end
