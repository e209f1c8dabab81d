-- post.lua - POST bodies read from a file (one body per line) to one path.
-- wrk ... -s post.lua URL -- BODIES_FILE PATH MODE
--   MODE "rotate": each thread walks the bodies round-robin from its own
--   offset, so concurrent requests carry different bodies (adapters);
--   MODE "random": a uniformly random body per request.
local bodies = {}
local path = "/"
local mode = "rotate"
local counter = 0
local nthreads = 0

function setup(thread)
	thread:set("tid", nthreads)
	nthreads = nthreads + 1
end

function init(args)
	for line in io.lines(args[1]) do
		if #line > 0 then
			bodies[#bodies + 1] = line
		end
	end
	path = args[2] or "/"
	mode = args[3] or "rotate"
	counter = (tid or 0) * 7919
	math.randomseed(os.time() + (tid or 0) * 104729)
	wrk.method = "POST"
	wrk.headers["Content-Type"] = "application/json"
end

function request()
	local b
	if mode == "random" then
		b = bodies[math.random(#bodies)]
	else
		counter = counter + 1
		b = bodies[(counter % #bodies) + 1]
	end
	return wrk.format("POST", path, nil, b)
end
