--- The library connector authors use: `local sluice = require "sluice"`.
-- @module sluice
local M = {}

M.connector = require("sluice.connector").define

return M
