-- The per-user step for a run of events, applied one after the other in the order given, each atomic
-- as before (the whole script is). On a Redis Cluster the caller sends only events whose keys share
-- one hash slot; on one Redis a batch's events go in a few calls. Per event it was one EVALSHA with
-- ~35 arguments; what events of a call share (the fields of their day, their rule) now comes once.
--
-- KEYS, per event in order: u:{U} (the communicator's hash: n name, r region, i institution,
--   c certified_at ms, x dense index; totals per period "s,sr,p,pr"; n<day>:<type> daily counters;
--   q<day> sign-in streak; z last prune day), u:{U}:x<gen> and u:{U}:x<gen-1> (dedupe entries of the
--   current and the previous generation of receive days: together they cover the accepted age
--   window), then u:{U}:k:<campaign> for each candidate campaign (s, sr, p, pr fields; l:<fingerprint>
--   marks an event fed live while the campaign's backfill is pending; b marks a backfilled user).
-- ARGV: 1 events E, 2 rules R, 3 contexts C, then
--   R rules of 7: type, limit, pointsLimit, points, shares, isSignin ('1'/'0'), maxBonus;
--   C contexts of 14 (an event-day and receive-day pair): expire-at (s) of the current dedupe
--     generation, the period fields (day, week, month, year, all), the counter-field prefix
--     ('n<day>:'), the day's streak field, the day before's streak field, today (prune marker),
--     4 prune cut-offs (fields of day/counter/streak, week, month, year below these go);
--   E events: fingerprint (16 hex digits), place, ts, rule (0-based), context (0-based), campaigns n,
--     then per campaign: region prefix ('' any), institution ('' any), pending ('1' while
--     backfilling), expire-at (s).
-- Candidate campaigns are those whose window holds the event time and whose cutoff is after its
-- receipt; the script keeps those that hold the communicator (region prefix, institution).
-- A decision is stored as "<place>:<code><points>:<streak>", the place being the event's stream
-- sequence, or "<seq>.<index>" for an event past the first of a batch message. An event seen again at
-- the same place is a redelivery: its decision is repeated, never its effect. At another place it is
-- a resend of the same event id: a duplicate.
-- The fingerprint comes as 16 hex digits (a string is far cheaper for the client to send than a
-- binary argument) and is stored as its 8 bytes, decoded as two 32-bit numbers (exact in a double;
-- six times cheaper than a gsub over its 8 hex pairs).
-- Returns one reply string per event (see reply()).

-- Cost notes (Redis runs this for every event, and Redis is the scarce core): every redis.call costs
-- about a microsecond before it does anything, so a step is one HMGET and one HSET of the
-- communicator's hash, two HGETs and one HSET of dedupe. Turning a Lua number into a string
-- (tostring, `..`) goes through sprintf("%.14g"); integers are formatted with '%d', twice as cheap.
local call, fmt, match, sub, char, floor = redis.call, string.format, string.match, string.sub, string.char, math.floor
local function int(n) return fmt('%d', n) end

local E, NR = tonumber(ARGV[1]), tonumber(ARGV[2])
local RULE0 = 4 -- first rule
local CTX0 = RULE0 + NR * 7 -- first context

-- The event being applied (set by the loop below; the functions read them).
local U, CK, CA, nc, fp, seq, tsS, ts, X, etype
local limit, plimit, pts_each, shares, is_signin, max_bonus

-- "s,sr,p,pr" → its four parts ('' for none).
local function split(v)
  if not v then return '', '', '', '' end
  local a, b, c, d = match(v, '^([^,]*),([^,]*),([^,]*),([^,]*)$')
  return a or '', b or '', c or '', d or ''
end

local function totals(code)
  local out = {}
  if code == 'c' then
    local v = call('HMGET', U, ARGV[X + 1], ARGV[X + 2], ARGV[X + 3], ARGV[X + 4], ARGV[X + 5])
    for i = 1, 5 do
      local a, b, c, d = split(v[i])
      out[#out + 1] = a; out[#out + 1] = b; out[#out + 1] = c; out[#out + 1] = d
    end
  end
  return out
end

-- Adds this event's shares and points to four totals (s, sr, p, pr); reached-at moves only forward in
-- event time. Returns them and whether anything changed.
local function add(s, sr, p, pr, pts)
  if shares > 0 then
    s = int(tonumber(s ~= '' and s or '0') + shares)
    if sr == '' or ts > tonumber(sr) then sr = tsS end
  end
  if pts > 0 then
    p = int(tonumber(p ~= '' and p or '0') + pts)
    if pr == '' or ts > tonumber(pr) then pr = tsS end
  end
  return s, sr, p, pr, shares > 0 or pts > 0
end

local function holds(j, region, inst)
  local prefix, cinst = ARGV[CA + j * 4], ARGV[CA + 1 + j * 4]
  return (prefix == '' or sub(region, 1, #prefix) == prefix) and (cinst == '' or cinst == inst)
end

-- Current totals of the campaigns that hold the communicator ('' for the others).
local function campaign_totals(region, inst)
  local out = {}
  for j = 0, nc - 1 do
    if holds(j, region, inst) then
      local v = call('HMGET', KEYS[CK + j], 's', 'sr', 'p', 'pr')
      for i = 1, 4 do out[#out + 1] = v[i] or '' end
    else
      for i = 1, 4 do out[#out + 1] = '' end
    end
  end
  return out
end

-- Reply: status, code, points, streak, region, institution, index, 20 period values, then 4 per
-- campaign, joined by commas into one string (one value for the client to decode instead of 27+;
-- no value holds a comma: region codes are digits, institution ids [A-Za-z0-9_-]).
local function reply(status, code, pts, streak, computed, camp, info)
  info = info or call('HMGET', U, 'r', 'i', 'x')
  local r = { status, code, pts, streak, info[1] or '', info[2] or '', info[3] or '0' }
  for _, v in ipairs(computed or totals(status == 'dup' and '' or code)) do r[#r + 1] = v end
  while #r < 27 do r[#r + 1] = '' end
  if camp == nil and status == 'repeat' and code == 'c' then camp = campaign_totals(info[1] or '', info[2] or '') end
  for j = 0, nc - 1 do
    for i = 1, 4 do r[#r + 1] = camp and camp[j * 4 + i] or '' end
  end
  return table.concat(r, ',')
end

local function step(D1, D2)
  for k = 1, 2 do
    local v = call('HGET', k == 1 and D1 or D2, fp)
    if v then
      local s, code, pts, streak = match(v, '^([%d.]+):(%a)(%d+):(%d+)$')
      if s == seq then return reply('repeat', code, pts, streak) end
      return reply('dup', code, '0', '0')
    end
  end

  -- pts and streak are numbers while computed, strings (int()) once final.
  local code, pts, streak = 'c', 0, 0
  local computed, camp = nil, nil
  local counter = ARGV[X + 6] .. etype -- n<day>:<type>
  -- Everything the step reads of the communicator, at once.
  local f = call('HMGET', U, 'r', 'c', 'i', 'x', ARGV[X + 1], ARGV[X + 2], ARGV[X + 3], ARGV[X + 4], ARGV[X + 5], counter, ARGV[X + 8], 'z')
  if not f[1] then
    code = 'u'
  elseif f[2] and f[2] ~= '' and tonumber(f[2]) > ts then
    code = 'n'
  else
    local n = tonumber(f[10] or '0')
    if n >= limit then
      code = 'x'
    else
      local upd = { counter, int(n + 1) }
      if n < plimit then pts = pts_each end
      if is_signin then
        streak = tonumber(f[11] or '0') + 1
        upd[#upd + 1] = ARGV[X + 7]; upd[#upd + 1] = int(streak)
        pts = pts_each + math.min(streak - 1, max_bonus)
      end
      -- The new totals of the five periods are written at once and are the reply.
      computed = {}
      for i = 1, 5 do
        local s, sr, p, pr = split(f[4 + i])
        local changed
        s, sr, p, pr, changed = add(s, sr, p, pr, pts)
        if changed then upd[#upd + 1] = ARGV[X + i]; upd[#upd + 1] = s .. ',' .. sr .. ',' .. p .. ',' .. pr end
        computed[#computed + 1] = s; computed[#computed + 1] = sr; computed[#computed + 1] = p; computed[#computed + 1] = pr
      end
      call('HSET', U, unpack(upd))
      -- The campaigns that hold the communicator: the same addition to their totals.
      camp = {}
      for j = 0, nc - 1 do
        if holds(j, f[1], f[3] or '') then
          local k = KEYS[CK + j]
          local v = call('HMGET', k, 's', 'sr', 'p', 'pr')
          local s, sr, p, pr = add(v[1] or '', v[2] or '', v[3] or '', v[4] or '', pts)
          local cu = {}
          if shares > 0 then cu = { 's', s, 'sr', sr } end
          if pts > 0 then cu[#cu + 1] = 'p'; cu[#cu + 1] = p; cu[#cu + 1] = 'pr'; cu[#cu + 1] = pr end
          if ARGV[CA + 2 + j * 4] == '1' then cu[#cu + 1] = 'l:' .. fp; cu[#cu + 1] = '1' end
          if #cu > 0 then
            call('HSET', k, unpack(cu))
            call('EXPIREAT', k, ARGV[CA + 3 + j * 4], 'NX')
          end
          camp[#camp + 1] = s; camp[#camp + 1] = sr; camp[#camp + 1] = p; camp[#camp + 1] = pr
        else
          for i = 1, 4 do camp[#camp + 1] = '' end
        end
      end
    end
  end

  -- Once a day per communicator: drop the fields of periods no new event can reach any more.
  if f[1] and f[12] ~= ARGV[X + 9] then
    local del = {}
    local c1 = ARGV[X + 10]
    local cut = { d = c1, n = 'n' .. sub(c1, 2), q = 'q' .. sub(c1, 2), w = ARGV[X + 11], m = ARGV[X + 12], y = ARGV[X + 13] }
    for _, k in ipairs(call('HKEYS', U)) do
      local c = cut[sub(k, 1, 1)]
      if c and #k >= #c and sub(k, 1, #c) < c then del[#del + 1] = k end
    end
    if #del > 0 then call('HDEL', U, unpack(del)) end
    call('HSET', U, 'z', ARGV[X + 9])
  end

  pts, streak = int(pts), int(streak)
  call('HSET', D1, fp, seq .. ':' .. code .. pts .. ':' .. streak)
  call('EXPIREAT', D1, ARGV[X], 'NX')
  return reply('new', code, pts, streak, computed, camp, { f[1], f[3], f[4] })
end

local out = {}
local ka, a = 1, CTX0 + tonumber(ARGV[3]) * 14
for e = 1, E do
  local hex = ARGV[a]
  seq, tsS = ARGV[a + 1], ARGV[a + 2]
  ts = tonumber(tsS)
  local r0 = RULE0 + tonumber(ARGV[a + 3]) * 7
  X = CTX0 + tonumber(ARGV[a + 4]) * 14
  nc = tonumber(ARGV[a + 5])
  CA = a + 6
  a = CA + nc * 4
  U, CK = KEYS[ka], ka + 3
  local D1, D2 = KEYS[ka + 1], KEYS[ka + 2]
  ka = CK + nc
  etype = ARGV[r0]
  limit, plimit, pts_each, shares = tonumber(ARGV[r0 + 1]), tonumber(ARGV[r0 + 2]), tonumber(ARGV[r0 + 3]), tonumber(ARGV[r0 + 4])
  is_signin, max_bonus = ARGV[r0 + 5] == '1', tonumber(ARGV[r0 + 6])
  local x, y = tonumber(sub(hex, 1, 8), 16), tonumber(sub(hex, 9, 16), 16)
  fp = char(floor(x / 16777216), floor(x / 65536) % 256, floor(x / 256) % 256, x % 256, floor(y / 16777216), floor(y / 65536) % 256, floor(y / 256) % 256, y % 256)
  out[e] = step(D1, D2)
end
return out
