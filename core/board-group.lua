#!lua flags=no-writes
-- One group's share of a read of a gated board (docs/boards.md "Reads"): the boards of one province,
-- which share its hash tag ({43}), so this touches one slot and runs on a Redis Cluster as it is.
-- Merging inside Redis returns a few entries per group instead of a few per unit.
--
-- KEYS: the group's boards in preorder. ARGV[1]: their layout, one letter per key:
--   'P' a province's gated board, then its own board and its cities;
--   'C' a city's gated board, then its own board and its counties;
--   'u' a unit (a complete board: a county or an own board).
-- ARGV[2] K, ARGV[3] mode, ARGV[4] score s, ARGV[5] member u, ARGV[6] n.
--   mode 'a' (around): {entries before (s, u), the n nearest above it, the n nearest below it}
--   mode 'p' (page): {entries at or before (s, u), the n entries after it}
--   mode 't' (total): entries of the group
-- Lists are flat (member, score, …), nearest first. The caller's u is never listed.
local layout, K, mode, s, u = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local sn, n = tonumber(s), tonumber(ARGV[6])
local call = redis.call
local byte, find, sub = string.byte, string.find, string.sub
local nk = #KEYS

-- The end of the subtree of the gated board at i: its children follow it up to the next board of
-- its level or above.
local function subtreeEnd(i)
  local j = find(layout, sub(layout, i, i) == 'P' and 'P' or '[PC]', i + 1)
  return j and j - 1 or nk
end

if mode == 't' then
  -- A gated board holding fewer than K entries never skipped a write: its ZCARD is its total.
  local t, i = 0, 1
  while i <= nk do
    local card = call('ZCARD', KEYS[i])
    if sub(layout, i, i) ~= 'u' and card < K then
      t = t + card
      i = subtreeEnd(i) + 1
    else
      if sub(layout, i, i) == 'u' then t = t + card end
      i = i + 1
    end
  end
  return t
end

-- Equal scores order by member bytes in Redis; Lua's < on strings follows the locale's collation.
local function blt(a, b)
  if a == b then return false end
  local l = #a < #b and #a or #b
  for i = 1, l do
    local x, y = byte(a, i), byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- A gated board answers for all of its children when the entry at index `pivot` (inside its exact
-- first K) lies after the read's position (around: not before (s, u); page: strictly after it):
-- then every member up to the position, and the n entries the read may take past it, are among its
-- first K, exactly (docs/boards.md). A board holding fewer than K entries is complete: it answers.
local pivot = mode == 'a' and K - 1 - n or K - n
local function answers(g)
  if pivot >= 0 then
    local r = call('ZRANGE', g, pivot, pivot, 'WITHSCORES')
    if #r == 0 then return true end
    local ps = tonumber(r[2])
    if ps > sn or (ps == sn and (blt(u, r[1]) or (mode == 'a' and r[1] == u))) then return true end
  end
  return call('ZCARD', g) < K
end
-- Sources: the units, and the gated boards that answer for theirs; a gated board is never read
-- past its first K (lim).
local srcK, srcLim = {}, {}
do
  local i = 1
  while i <= nk do
    local c = sub(layout, i, i)
    if c == 'u' then
      srcK[#srcK + 1], srcLim[#srcLim + 1] = KEYS[i], 1e15
      i = i + 1
    elseif answers(KEYS[i]) then
      srcK[#srcK + 1], srcLim[#srcLim + 1] = KEYS[i], K - 1
      i = subtreeEnd(i) + 1
    else
      i = i + 1
    end
  end
end

-- The n nearest entries each side, kept sorted nearest first; a candidate no nearer than the n-th is
-- refused, and so is everything after it in its source (sources are read nearest first).
-- Entry: {score, member, raw score, source, next index in the source, or -1 when it is the
-- source's last or a later one is in the list}.
local function belowFirst(sa, ma, sb, mb) return sa < sb or (sa == sb and blt(ma, mb)) end -- below (s, u): ascending
local function aboveFirst(sa, ma, sb, mb) return sa > sb or (sa == sb and blt(mb, ma)) end -- above (s, u): descending
local function offer(best, nearer, sc, m, raw, j, nxt)
  local len = #best
  if len >= n and not nearer(sc, m, best[len][1], best[len][2]) then return false end
  local lo, hi = 1, len + 1 -- first position whose entry is not nearer than the candidate
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if nearer(best[mid][1], best[mid][2], sc, m) then lo = mid + 1 else hi = mid end
  end
  table.insert(best, lo, { sc, m, raw, j, nxt })
  if len >= n then best[len + 1] = nil end
  return true
end
-- Offers a fetched run of source j (flat ZRANGE reply, in source order when step = 2, reversed when
-- step = -2) until one is refused; the last one offered remembers where the source goes on.
local function offerRun(best, nearer, r, from, to, step, j, nxt)
  local last
  for i = from, to, step do
    local m = r[i]
    if m ~= u then
      if not offer(best, nearer, tonumber(r[i + 1]), m, r[i + 1], j, -1) then return end
      last = m
    end
  end
  if last and nxt then
    for _, e in ipairs(best) do
      if e[2] == last then e[5] = nxt end
    end
  end
end
-- Reads on past the nearest entry of the list that was its source's last fetched one, until none
-- is: a merge in board order, each source read in chunks that grow (4, 8, … 64) but never past what
-- could still enter the list.
local srcCh = {}
local function refill(best, nearer, dir)
  local pos = 1
  while pos <= #best do
    local e = best[pos]
    local nxt = e[5]
    if nxt < 0 then
      pos = pos + 1
    else
      e[5] = -1
      local j = e[4]
      local ch = srcCh[j] or 4
      srcCh[j] = ch < 64 and ch * 2 or ch
      if ch > n - pos then ch = n - pos end
      if ch > 0 then
        if dir > 0 then
          local b = nxt + ch - 1
          if b > srcLim[j] then b = srcLim[j] end
          if nxt <= b then
            local r = call('ZRANGE', srcK[j], nxt, b, 'WITHSCORES')
            offerRun(best, nearer, r, 1, #r - 1, 2, j, #r == (b - nxt + 1) * 2 and b < srcLim[j] and b + 1 or nil)
          end
        else
          local a = nxt - ch + 1
          if a < 0 then a = 0 end
          local r = call('ZRANGE', srcK[j], a, nxt, 'WITHSCORES')
          offerRun(best, nearer, r, #r - 1, 1, -2, j, a > 0 and a - 1 or nil)
        end
      end
      -- What was fetched lies after e: go on from e.
    end
  end
end

local count = 0
local below, above = {}, {}
local W = 2 * n + 4
-- Once the lists hold n each, only entries between their n-th ones can still enter: a source is
-- asked for just those, by score, which for most sources is nothing. Returns false when the window
-- held more than W (then the source is read by index).
local function window(k)
  local r = call('ZRANGE', k, mode == 'a' and above[n][3] or s, below[n][3], 'BYSCORE', 'LIMIT', 0, W, 'WITHSCORES')
  if #r >= 2 * W then return false end
  local c = 0
  for i = 1, #r, 2 do
    local m, sc = r[i], tonumber(r[i + 1])
    if m == u then
      if mode == 'p' and sc == sn then c = c + 1 end
    elseif sc < sn or (sc == sn and blt(m, u)) then
      if sc == sn then c = c + 1 end
      if mode == 'a' then offer(above, aboveFirst, sc, m, r[i + 1], 0, -1) end
    else
      offer(below, belowFirst, sc, m, r[i + 1], 0, -1)
    end
  end
  return c
end
for j = 1, #srcK do
  local k, lim = srcK[j], srcLim[j]
  -- Entries strictly above s, then a window from just above s: the members at s, then below.
  local c = call('ZCOUNT', k, '-inf', '(' .. s)
  count = count + c
  local w = n > 0 and #below >= n and (mode == 'p' or #above >= n) and window(k)
  if w then
    count = count + w
  else
    local lo = (mode == 'a' and c > 0) and c - 1 or c
    local hi = c -- one entry past s: a member at s, or the nearest below
    local r = call('ZRANGE', k, lo, hi, 'WITHSCORES')
    local aboveM, aboveRaw -- the entry at c - 1, the nearest above s
    if lo < c then aboveM, aboveRaw = r[1], r[2] end
    local i = lo < c and 3 or 1
    local idx = c
    local tiesAbove
    while true do
      if r[i] == nil then
        if #r < (hi - lo + 1) * 2 then break end
        lo, hi = idx, idx + 15
        r = call('ZRANGE', k, lo, hi, 'WITHSCORES')
        i = 1
        if #r == 0 then break end
      end
      if tonumber(r[i + 1]) ~= sn then break end
      local m = r[i]
      if m == u then
        if mode == 'p' then count = count + 1 end
      elseif blt(m, u) then
        count = count + 1
        if mode == 'a' then
          tiesAbove = tiesAbove or {}
          tiesAbove[#tiesAbove + 1] = { m, r[i + 1] }
        end
      elseif n > 0 then
        -- below u at her score: the nearest below
        offer(below, belowFirst, sn, m, r[i + 1], j, -1)
      end
      i, idx = i + 2, idx + 1
    end
    -- The rest of the window lies below s; the source goes on past it unless the window ran short.
    if n > 0 then
      if r[i] ~= nil then
        local full = #r == (hi - lo + 1) * 2 and hi < lim
        offerRun(below, belowFirst, r, i, #r - 1, 2, j, full and hi + 1 or nil)
      end
      if mode == 'a' then
        local open = true
        if tiesAbove then
          for t = #tiesAbove, 1, -1 do
            if not offer(above, aboveFirst, sn, tiesAbove[t][1], tiesAbove[t][2], j, -1) then open = false break end
          end
        end
        if open and aboveM and aboveM ~= u then offer(above, aboveFirst, tonumber(aboveRaw), aboveM, aboveRaw, j, c > 1 and c - 2 or -1) end
      end
    end
  end
end
if n == 0 then return mode == 'p' and { count, {} } or { count, {}, {} } end
refill(below, belowFirst, 1)
local function flat(best)
  local out = {}
  for _, e in ipairs(best) do
    out[#out + 1] = e[2]
    out[#out + 1] = e[3]
  end
  return out
end
if mode == 'p' then return { count, flat(below) } end
refill(above, aboveFirst, -1)
return { count, flat(above), flat(below) }
