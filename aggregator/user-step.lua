-- The per-user step: one atomic script in the user's hash slot.
-- KEYS[1]     u:{U}:i           the communicator (n name, r region, i institution, c certified_at ms,
--                                 x dense numeric index for the KPI bitmaps)
-- KEYS[2..6]  u:{U}:<period>    the user's totals for the event's day, week, month, year, all
--                               (s shares, sr shares reached_at, p points, pr points reached_at;
--                                the day also holds n:<type> counters and ss, the sign-in streak)
-- KEYS[7]     u:{U}:<day before> for the sign-in streak
-- KEYS[8..]   u:{U}:x:<day>     dedupe buckets by receive day; KEYS[8] is the current one
-- KEYS[8+nb..] u:{U}:k:<campaign> the user's totals in each candidate campaign (s, sr, p, pr as
--                                for periods; l:<fingerprint> marks an event fed live while the
--                                campaign's backfill is pending; b marks a backfilled user)
-- ARGV: fingerprint (16 hex digits), place, type, ts, limit, pointsLimit, points, shares, isSignin, maxBonus,
--       bucketTtl, ttl d, w, m, y, a (0 = none), nBuckets, nCampaigns, then per campaign:
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
local seq, etype, ts = ARGV[2], ARGV[3], tonumber(ARGV[4])
local limit, plimit, pts_each, shares = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local is_signin, max_bonus = ARGV[9] == '1', tonumber(ARGV[10])
local nb = tonumber(ARGV[17])
local nc = tonumber(ARGV[18] or '0')

-- Cost notes (Redis runs this once per event, and Redis is the scarce core): turning a Lua number
-- into a string (tostring, `..`, a number passed to redis.call) goes through sprintf("%.14g") and
-- costs about as much as a whole HGET; integers are formatted with '%d', which is twice as cheap, and
-- numeric arguments that came as strings (TTLs, expire-at) are passed on as they came.
local function int(n) return string.format('%d', n) end

local function totals(code)
  local out = {}
  if code == 'c' then
    for i = 2, 6 do
      local v = redis.call('HMGET', KEYS[i], 's', 'sr', 'p', 'pr')
      for j = 1, 4 do out[#out + 1] = v[j] or '' end
    end
  end
  return out
end

-- Adds this event's shares and points to a totals hash (s, sr, p, pr): returns the new values, the
-- HSET arguments (empty when nothing changes) and whether the hash held no totals before (then the
-- caller sets its TTL: a hash with totals got it with its first ones); reached-at moves only forward
-- in event time.
local function add_totals(k, pts)
  local v = redis.call('HMGET', k, 's', 'sr', 'p', 'pr')
  local fresh = not v[1] and not v[3]
  local upd = {}
  if shares > 0 then
    v[1] = int(tonumber(v[1] or '0') + shares)
    if ts > tonumber(v[2] or '0') then v[2] = ARGV[4] end
    upd[#upd + 1] = 's'; upd[#upd + 1] = v[1]; upd[#upd + 1] = 'sr'; upd[#upd + 1] = v[2]
  end
  if pts > 0 then
    v[3] = int(tonumber(v[3] or '0') + pts)
    if ts > tonumber(v[4] or '0') then v[4] = ARGV[4] end
    upd[#upd + 1] = 'p'; upd[#upd + 1] = v[3]; upd[#upd + 1] = 'pr'; upd[#upd + 1] = v[4]
  end
  return v, upd, fresh
end

local function holds(j, region, inst)
  local prefix, cinst = ARGV[19 + j * 4], ARGV[20 + j * 4]
  return (prefix == '' or string.sub(region, 1, #prefix) == prefix) and (cinst == '' or cinst == inst)
end

-- Current totals of the campaigns that hold the communicator ('' for the others).
local function campaign_totals(region, inst)
  local out = {}
  for j = 0, nc - 1 do
    if holds(j, region, inst) then
      local v = redis.call('HMGET', KEYS[8 + nb + j], 's', 'sr', 'p', 'pr')
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
  info = info or redis.call('HMGET', KEYS[1], 'r', 'i', 'x')
  local r = { status, code, pts, streak, info[1] or '', info[2] or '', info[3] or '0' }
  for _, v in ipairs(computed or totals(status == 'dup' and '' or code)) do r[#r + 1] = v end
  while #r < 27 do r[#r + 1] = '' end
  if camp == nil and status == 'repeat' and code == 'c' then camp = campaign_totals(info[1] or '', info[2] or '') end
  for j = 0, nc - 1 do
    for i = 1, 4 do r[#r + 1] = camp and camp[j * 4 + i] or '' end
  end
  return table.concat(r, ',')
end

for i = 0, nb - 1 do
  local v = redis.call('HGET', KEYS[8 + i], fp)
  if v then
    local s, code, pts, streak = string.match(v, '^([%d.]+):(%a)(%d+):(%d+)$')
    if s == seq then return reply('repeat', code, pts, streak) end
    return reply('dup', code, '0', '0')
  end
end

-- pts and streak are numbers while computed, strings (int()) once final.
local code, pts, streak = 'c', 0, 0
local computed, camp = nil, nil
local info = redis.call('HMGET', KEYS[1], 'r', 'c', 'i', 'x')
if not info[1] then
  code = 'u'
elseif info[2] and info[2] ~= '' and tonumber(info[2]) > ts then
  code = 'n'
else
  local counter = 'n:' .. etype
  local n = tonumber(redis.call('HGET', KEYS[2], counter) or '0')
  if n >= limit then
    code = 'x'
  else
    redis.call('HINCRBY', KEYS[2], counter, '1')
    if n < plimit then pts = pts_each end
    if is_signin then
      streak = tonumber(redis.call('HGET', KEYS[7], 'ss') or '0') + 1
      redis.call('HSET', KEYS[2], 'ss', int(streak))
      pts = pts_each + math.min(streak - 1, max_bonus)
    end
    -- One read and one write per period hash; the new totals are the reply.
    computed = {}
    for i = 2, 6 do
      local v, upd, fresh = add_totals(KEYS[i], pts)
      if #upd > 0 then redis.call('HSET', KEYS[i], unpack(upd)) end
      for j = 1, 4 do computed[#computed + 1] = v[j] or '' end
      if fresh and ARGV[10 + i] ~= '0' then redis.call('EXPIRE', KEYS[i], ARGV[10 + i], 'NX') end
    end
    -- The campaigns that hold the communicator: the same addition to their totals.
    camp = {}
    for j = 0, nc - 1 do
      if holds(j, info[1], info[3] or '') then
        local k = KEYS[8 + nb + j]
        local v, upd = add_totals(k, pts)
        if ARGV[21 + j * 4] == '1' then upd[#upd + 1] = 'l:' .. fp; upd[#upd + 1] = '1' end
        if #upd > 0 then
          redis.call('HSET', k, unpack(upd))
          redis.call('EXPIREAT', k, ARGV[22 + j * 4], 'NX')
        end
        for i = 1, 4 do camp[#camp + 1] = v[i] or '' end
      else
        for i = 1, 4 do camp[#camp + 1] = '' end
      end
    end
  end
end

pts, streak = int(pts), int(streak)
redis.call('HSET', KEYS[8], fp, seq .. ':' .. code .. pts .. ':' .. streak)
redis.call('EXPIRE', KEYS[8], ARGV[11], 'NX')
return reply('new', code, pts, streak, computed, camp, { info[1], info[3], info[4] })
