-- Local directories (Elastic's `dir` connector, under its alias).
--
-- Walks each configured path depth-first without recursion (deep trees do
-- not grow the C stack); symlinks are skipped unless follow_symlinks is on,
-- and then directory loops are cut by (device, inode). Content is read lazily:
-- an unchanged file (same path, size, mtime) is never opened.
local sluice = require("sluice")
local fs = require("sluice.fs")
local text = require("sluice.text")
local crypto = require("sluice.crypto")
local extract = require("sluice.extract")
local content = require("sluice.content")

-- Seconds one file may take to extract (a PDF worker is killed after it).
local EXTRACT_TIMEOUT = 30

-- MIME types whose bytes are text worth indexing as they are.
local TEXT_TYPES = {
  ["application/json"] = true, ["application/xml"] = true, ["application/javascript"] = true,
  ["application/x-sh"] = true, ["application/x-shellscript"] = true, ["application/x-perl"] = true,
  ["application/x-ruby"] = true, ["application/x-python"] = true, ["application/sql"] = true,
  ["application/x-yaml"] = true, ["application/toml"] = true, ["application/csv"] = true,
  ["application/x-tex"] = true, ["application/x-troff-man"] = true, ["image/svg+xml"] = true,
  ["application/x-wine-extension-ini"] = true, ["application/x-awk"] = true,
}

-- Text types whose bytes are markup or data, not the text itself.
local EXTRACTED_TEXT = {
  ["text/html"] = true, ["application/xhtml+xml"] = true, ["application/xml"] = true,
  ["text/xml"] = true, ["application/json"] = true, ["text/csv"] = true,
  ["application/csv"] = true, ["text/tab-separated-values"] = true, ["text/rtf"] = true,
}

local function is_text(mime)
  return mime:sub(1, 5) == "text/" or TEXT_TYPES[mime] == true
end

local function extension(name)
  local base = name:gsub("%.gz$", "")
  local ext = base:match("%.([^./]+)$")
  return ext and ext:lower() or ""
end

-- A file name that is not UTF-8 still needs a stable id; its displayed form
-- is cleaned by the engine, so two such names could look alike: hash it.
local function doc_id(path)
  if text.utf8_valid(path) then return path end
  return "path-sha256:" .. crypto.hex(crypto.sha256(path))
end

-- Collapses "//", "/./" and "dir/.." in an absolute path, textually.
local function normalize(p)
  local parts = {}
  for seg in p:gmatch("[^/]+") do
    if seg == ".." then
      if #parts > 0 then parts[#parts] = nil end
    elseif seg ~= "." then
      parts[#parts + 1] = seg
    end
  end
  return "/" .. table.concat(parts, "/")
end

local function matches_any(patterns, rel)
  for _, p in ipairs(patterns) do
    if fs.glob_match(p, rel) then return true end
  end
  return false
end

-- Mostly valid UTF-8 with few control bytes: text, whatever libmagic says.
local function looks_like_text(sample)
  if #sample == 0 then return false end
  local controls = select(2, sample:gsub("[%z\1-\8\14-\31\127]", ""))
  if controls > math.max(1, #sample / 100) then return false end
  local cleaned = sample:gsub("%z", "")
  local _, fixed = text.clean(text.truncate_utf8(cleaned, #cleaned - 3 > 0 and #cleaned - 3 or #cleaned))
  return fixed * 100 <= #sample
end

local function read_content(path, max)
  local data, truncated_or_err = fs.read(path, max + 1)
  if not data then return nil, truncated_or_err end
  local fields = {}
  if text.is_gzip(data) then
    fields.content_encoding = "gzip"
    local inner, gerr = text.gunzip(data, max)
    if not inner then
      if gerr ~= "too large" then return nil, "gzip: " .. tostring(gerr) end
      -- Like a file over the cap: metadata only, not an error.
      fields.content_skipped = "decompressed size over max_file_size"
      return fields
    end
    data = inner
  end
  local sample = data:sub(1, 8192)
  local name = path:match("([^/]*)$"):gsub("%.gz$", "")
  local mime, charset = fs.mime(sample, (path:gsub("%.gz$", "")))
  if mime == "application/octet-stream" and looks_like_text(sample) then
    -- libmagic calls any file with a NUL byte binary; text with a stray
    -- NUL is still text (the engine strips the NUL).
    mime, charset = "text/plain", "utf-8"
  end
  fields.mime_type = mime
  if charset then fields.charset = charset end
  if #data > max then return fields end
  -- Plain UTF-8 text is indexed as it is (the engine's hygiene does the
  -- rest); everything else goes through extraction: markup to visible text,
  -- legacy charsets to UTF-8, PDF and office formats to their text.
  -- (NULs are dropped by the engine; copy the text without them only when
  -- there are any, not every 10 MB changelog)
  if is_text(mime) and not EXTRACTED_TEXT[mime]
      and text.utf8_valid(data:find("%z") and (data:gsub("%z", "")) or data) then
    fields.body = data
    return fields
  end
  local res, err, partial = extract.text(data, {
    name = name, max_input = max, timeout = EXTRACT_TIMEOUT,
    -- text that libmagic recognised but that is not UTF-8: convert it,
    -- even when a stray NUL makes it look binary to the detector
    type = (is_text(mime) and not EXTRACTED_TEXT[mime]) and "text" or nil,
  })
  return content.fields(res, err, partial, fields)
end

return sluice.connector {
  name = "filesystem",
  title = "Local filesystem",
  description = "Indexes the files under local directories: metadata for every file, and the text of every format sluice.extract reads (text in any charset, HTML, XML, JSON, CSV, PDF, office documents, mail; gzip-compressed ones included).",
  configuration = {
    path = { type = "list", label = "Paths", required = true, order = 1,
      description = "directories (or files) to index; relative paths are relative to the configuration file" },
    include = { type = "list", label = "Include globs", default = {}, order = 2,
      description = "when set, only files whose path (relative to its root) matches one of these globs" },
    exclude = { type = "list", label = "Exclude globs", default = {}, order = 3,
      description = "files and directories matching any of these globs are skipped" },
    follow_symlinks = { type = "bool", label = "Follow symlinks", default = false, order = 4 },
    max_file_size = { type = "int", label = "Maximum file size (bytes)", default = 10 * 1024 * 1024, order = 5,
      description = "larger files are indexed with metadata only",
      validations = { { type = "greater_than", constraint = -1 } } },
  },

  validate = function(ctx)
    local errs = {}
    for i, p in ipairs(ctx.config.path) do
      -- Ids are paths: make them the same however the config was named
      -- and wherever sluice runs from.
      p = normalize(p:sub(1, 1) == "/" and p or (ctx.dir .. "/" .. p))
      ctx.config.path[i] = p
      local st, err = fs.stat(p)
      if not st then
        errs[#errs + 1] = { path = "path[" .. i .. "]", message = p .. ": " .. tostring(err) }
      elseif st.type == "directory" and not fs.access(p, "r") then
        errs[#errs + 1] = { path = "path[" .. i .. "]", message = p .. ": not readable" }
      elseif st.type ~= "directory" and st.type ~= "file" then
        -- a walk skips FIFOs and devices; a path naming one is a mistake
        errs[#errs + 1] = { path = "path[" .. i .. "]",
          message = p .. ": not a regular file or directory (a FIFO, socket or device)" }
      end
    end
    return #errs > 0 and errs or nil
  end,

  ping = function(ctx)
    for _, p in ipairs(ctx.config.path) do
      local st, err = fs.stat(p)
      if not st then return nil, p .. ": " .. tostring(err) end
    end
    return true
  end,

  docs = function(ctx)
    local cfg = ctx.config
    local max = cfg.max_file_size

    local function emit_file(path, rel, st)
      if #cfg.include > 0 and not matches_any(cfg.include, rel) then return end
      if matches_any(cfg.exclude, rel) then return end
      local name = path:match("([^/]*)$")
      local doc = {
        _id = doc_id(path),
        _timestamp = st.mtime,
        title = name,
        path = path,
        extension = extension(name),
        size = st.size,
      }
      if st.size <= max then
        doc._content = function() return read_content(path, max) end
      else
        doc.content_skipped = "larger than max_file_size"
      end
      ctx.yield(doc)
    end

    for _, root in ipairs(cfg.path) do
      local st, err = fs.stat(root)
      if not st then
        ctx.incomplete(root .. ": " .. tostring(err))
      elseif st.type == "file" then
        emit_file(root, root:match("([^/]*)$"), st)
      elseif st.type ~= "directory" then
        ctx.incomplete(root .. ": not a regular file or directory")
      else
        local visited = { [st.dev .. ":" .. st.ino] = true }
        local stack = { { root, "" } }
        while #stack > 0 do
          local dir, rel_dir = unpack(table.remove(stack))
          local it, derr = fs.dir(dir)
          if not it then
            -- Files we cannot see must not be deleted as "gone".
            ctx.incomplete(dir .. ": " .. tostring(derr))
          else
            local subdirs = {}
            for name in it do
              local path = dir .. "/" .. name
              local rel = rel_dir == "" and name or (rel_dir .. "/" .. name)
              local est, eerr, ecode = fs.lstat(path)
              if not est then
                if ecode == "ENOENT" then
                  ctx.log.debug("skipping vanished entry", { path = path })
                else
                  -- EACCES (a folder we may list but not enter),
                  -- ENAMETOOLONG...: the entry exists but is unseen, so it
                  -- must not be deleted as gone.
                  ctx.incomplete(path .. ": " .. tostring(eerr))
                end
              elseif est.type == "link" then
                if cfg.follow_symlinks then
                  est, eerr, ecode = fs.stat(path)
                  if not est then
                    if ecode == "ENOENT" or ecode == "ELOOP" then
                      ctx.log.debug("skipping broken symlink", { path = path, reason = eerr })
                    else
                      ctx.incomplete(path .. ": " .. tostring(eerr))
                    end
                  end
                else
                  est = nil
                end
              end
              if est then
                if est.type == "directory" then
                  local key = est.dev .. ":" .. est.ino
                  if not visited[key] and not matches_any(cfg.exclude, rel) then
                    visited[key] = true
                    subdirs[#subdirs + 1] = { path, rel }
                  end
                elseif est.type == "file" then
                  emit_file(path, rel, est)
                end
              end
            end
            -- Reverse so the walk visits subdirectories in listing order.
            for i = #subdirs, 1, -1 do stack[#stack + 1] = subdirs[i] end
          end
        end
      end
    end
  end,
}
