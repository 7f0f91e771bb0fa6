local M = {}
function M.main(args) print("sluice", table.concat(args, " ")) return 0 end
return M
