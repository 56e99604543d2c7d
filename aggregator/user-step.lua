-- The per-user step: one atomic script in the user's hash slot.
-- KEYS[1]     u:{U}             the communicator's hash (core/keys.ts): n name, r region, i institution,
--                               c certified_at ms, x dense index; totals per period "s,sr,p,pr";
--                               n<day>:<type> daily counters; q<day> sign-in streak; z last prune day
-- KEYS[2]     u:{U}:x<gen>      dedupe entries of the current generation of receive days
-- KEYS[3]     u:{U}:x<gen-1>    … and of the one before (together they cover the accepted age window)
-- KEYS[4..]   u:{U}:k:<campaign> the user's totals in each candidate campaign (s, sr, p, pr fields;
--                               l:<fingerprint> marks an event fed live while the campaign's backfill
--                               is pending; b marks a backfilled user)
-- ARGV: 1 fingerprint (16 hex digits), 2 place, 3 type, 4 ts, 5 limit, 6 pointsLimit, 7 points,
--       8 shares, 9 isSignin, 10 maxBonus, 11 expire-at (s) of KEYS[2], 12..16 the event's period
--       fields (day, week, month, year, all), 17 its day's counter field, 18 its day's streak field,
--       19 the day before's streak field, 20 today (prune marker), 21..24 prune cut-offs (fields of
--       day/counter/streak, week, month, year below these go), 25 nCampaigns, then per campaign:
--       region prefix ('' any), institution ('' any), pending ('1' while backfilling), expire-at (s)
-- Candidate campaigns are those whose window holds the event time and whose cutoff is after its
-- receipt; the script keeps those that hold the communicator (region prefix, institution).
-- A decision is stored as "<place>:<code><points>:<streak>", the place being the event's stream
-- sequence, or "<seq>.<index>" for an event past the first of a batch message. An event seen again at
-- the same place is a redelivery: its decision is repeated, never its effect. At another place it is
-- a resend of the same event id: a duplicate.
-- The fingerprint comes as 16 hex digits (a string is far cheaper for the client to send than a
-- binary argument) and is stored as its 8 bytes, decoded as two 32-bit numbers (exact in a double;
-- six times cheaper than a gsub over its 8 hex pairs).
local fp
do
  local a, b, f = tonumber(string.sub(ARGV[1], 1, 8), 16), tonumber(string.sub(ARGV[1], 9, 16), 16), math.floor
  fp = string.char(f(a / 16777216), f(a / 65536) % 256, f(a / 256) % 256, a % 256, f(b / 16777216), f(b / 65536) % 256, f(b / 256) % 256, b % 256)
end
local U = KEYS[1]
local seq, etype, ts = ARGV[2], ARGV[3], tonumber(ARGV[4])
local limit, plimit, pts_each, shares = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local is_signin, max_bonus = ARGV[9] == '1', tonumber(ARGV[10])
local nc = tonumber(ARGV[25] or '0')
local CK = 4 -- first campaign key
local CA = 26 -- first campaign argument

-- Cost notes (Redis runs this once per event, and Redis is the scarce core): every redis.call costs
-- about a microsecond before it does anything, so the whole step is one HMGET and one HSET of the
-- communicator's hash, two HGETs and one HSET of dedupe. Turning a Lua number into a string
-- (tostring, `..`) goes through sprintf("%.14g"); integers are formatted with '%d', twice as cheap.
local function int(n) return string.format('%d', n) end

-- "s,sr,p,pr" → its four parts ('' for none).
local function split(v)
  if not v then return '', '', '', '' end
  local a, b, c, d = string.match(v, '^([^,]*),([^,]*),([^,]*),([^,]*)$')
  return a or '', b or '', c or '', d or ''
end

local function totals(code)
  local out = {}
  if code == 'c' then
    local v = redis.call('HMGET', U, ARGV[12], ARGV[13], ARGV[14], ARGV[15], ARGV[16])
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
    if sr == '' or ts > tonumber(sr) then sr = ARGV[4] end
  end
  if pts > 0 then
    p = int(tonumber(p ~= '' and p or '0') + pts)
    if pr == '' or ts > tonumber(pr) then pr = ARGV[4] end
  end
  return s, sr, p, pr, shares > 0 or pts > 0
end

local function holds(j, region, inst)
  local prefix, cinst = ARGV[CA + j * 4], ARGV[CA + 1 + j * 4]
  return (prefix == '' or string.sub(region, 1, #prefix) == prefix) and (cinst == '' or cinst == inst)
end

-- Current totals of the campaigns that hold the communicator ('' for the others).
local function campaign_totals(region, inst)
  local out = {}
  for j = 0, nc - 1 do
    if holds(j, region, inst) then
      local v = redis.call('HMGET', KEYS[CK + j], 's', 'sr', 'p', 'pr')
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
  info = info or redis.call('HMGET', U, 'r', 'i', 'x')
  local r = { status, code, pts, streak, info[1] or '', info[2] or '', info[3] or '0' }
  for _, v in ipairs(computed or totals(status == 'dup' and '' or code)) do r[#r + 1] = v end
  while #r < 27 do r[#r + 1] = '' end
  if camp == nil and status == 'repeat' and code == 'c' then camp = campaign_totals(info[1] or '', info[2] or '') end
  for j = 0, nc - 1 do
    for i = 1, 4 do r[#r + 1] = camp and camp[j * 4 + i] or '' end
  end
  return table.concat(r, ',')
end

for k = 2, 3 do
  local v = redis.call('HGET', KEYS[k], fp)
  if v then
    local s, code, pts, streak = string.match(v, '^([%d.]+):(%a)(%d+):(%d+)$')
    if s == seq then return reply('repeat', code, pts, streak) end
    return reply('dup', code, '0', '0')
  end
end

-- pts and streak are numbers while computed, strings (int()) once final.
local code, pts, streak = 'c', 0, 0
local computed, camp = nil, nil
-- Everything the step reads of the communicator, at once.
local f = redis.call('HMGET', U, 'r', 'c', 'i', 'x', ARGV[12], ARGV[13], ARGV[14], ARGV[15], ARGV[16], ARGV[17], ARGV[19], 'z')
if not f[1] then
  code = 'u'
elseif f[2] and f[2] ~= '' and tonumber(f[2]) > ts then
  code = 'n'
else
  local n = tonumber(f[10] or '0')
  if n >= limit then
    code = 'x'
  else
    local upd = { ARGV[17], int(n + 1) }
    if n < plimit then pts = pts_each end
    if is_signin then
      streak = tonumber(f[11] or '0') + 1
      upd[#upd + 1] = ARGV[18]; upd[#upd + 1] = int(streak)
      pts = pts_each + math.min(streak - 1, max_bonus)
    end
    -- The new totals of the five periods are written at once and are the reply.
    computed = {}
    for i = 1, 5 do
      local s, sr, p, pr = split(f[4 + i])
      local changed
      s, sr, p, pr, changed = add(s, sr, p, pr, pts)
      if changed then upd[#upd + 1] = ARGV[11 + i]; upd[#upd + 1] = s .. ',' .. sr .. ',' .. p .. ',' .. pr end
      computed[#computed + 1] = s; computed[#computed + 1] = sr; computed[#computed + 1] = p; computed[#computed + 1] = pr
    end
    redis.call('HSET', U, unpack(upd))
    -- The campaigns that hold the communicator: the same addition to their totals.
    camp = {}
    for j = 0, nc - 1 do
      if holds(j, f[1], f[3] or '') then
        local k = KEYS[CK + j]
        local v = redis.call('HMGET', k, 's', 'sr', 'p', 'pr')
        local s, sr, p, pr = add(v[1] or '', v[2] or '', v[3] or '', v[4] or '', pts)
        local cu = {}
        if shares > 0 then cu = { 's', s, 'sr', sr } end
        if pts > 0 then cu[#cu + 1] = 'p'; cu[#cu + 1] = p; cu[#cu + 1] = 'pr'; cu[#cu + 1] = pr end
        if ARGV[CA + 2 + j * 4] == '1' then cu[#cu + 1] = 'l:' .. fp; cu[#cu + 1] = '1' end
        if #cu > 0 then
          redis.call('HSET', k, unpack(cu))
          redis.call('EXPIREAT', k, ARGV[CA + 3 + j * 4], 'NX')
        end
        camp[#camp + 1] = s; camp[#camp + 1] = sr; camp[#camp + 1] = p; camp[#camp + 1] = pr
      else
        for i = 1, 4 do camp[#camp + 1] = '' end
      end
    end
  end
end

-- Once a day per communicator: drop the fields of periods no new event can reach any more.
if f[1] and f[12] ~= ARGV[20] then
  local del = {}
  local cut = { d = ARGV[21], n = 'n' .. string.sub(ARGV[21], 2), q = 'q' .. string.sub(ARGV[21], 2), w = ARGV[22], m = ARGV[23], y = ARGV[24] }
  for _, k in ipairs(redis.call('HKEYS', U)) do
    local c = cut[string.sub(k, 1, 1)]
    if c and #k >= #c and string.sub(k, 1, #c) < c then del[#del + 1] = k end
  end
  if #del > 0 then redis.call('HDEL', U, unpack(del)) end
  redis.call('HSET', U, 'z', ARGV[20])
end

pts, streak = int(pts), int(streak)
redis.call('HSET', KEYS[2], fp, seq .. ':' .. code .. pts .. ':' .. streak)
redis.call('EXPIREAT', KEYS[2], ARGV[11], 'NX')
return reply('new', code, pts, streak, computed, camp, { f[1], f[3], f[4] })
