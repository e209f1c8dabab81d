-- getpaths.lua - GET paths read from a file (one per line), round-robin.
-- wrk ... -s getpaths.lua URL -- PATHS_FILE
local paths = {}
local counter = 0
function init(args)
	for line in io.lines(args[1]) do
		if #line > 0 then
			paths[#paths + 1] = line
		end
	end
end
function request()
	counter = counter + 1
	return wrk.format("GET", paths[(counter % #paths) + 1])
end
