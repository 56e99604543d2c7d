-- The per-user step: one atomic script in the user's hash slot.
-- KEYS[1]     u:{U}:i           the communicator (n name, r region, i institution, c certified_at ms,
--                                 x dense numeric index for the KPI bitmaps)
-- KEYS[2..6]  u:{U}:<period>    the user's totals for the event's day, week, month, year, all
--                               (s shares, sr shares reached_at, p points, pr points reached_at;
--                                the day also holds n:<type> counters and ss, the sign-in streak)
-- KEYS[7]     u:{U}:<day before> for the sign-in streak
-- KEYS[8..]   u:{U}:x:<day>     dedupe buckets by receive day; KEYS[8] is the current one
-- ARGV: fingerprint, seq, type, ts, limit, pointsLimit, points, shares, isSignin, maxBonus,
--       bucketTtl, ttl d, w, m, y, a (0 = none), nBuckets
-- A decision is stored as "<seq>:<code><points>:<streak>". A message seen again with the same
-- stream seq is a redelivery: its decision is repeated, never its effect. With another seq it is a
-- resend of the same event id: a duplicate.
local fp, seq, etype, ts = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local limit, plimit, pts_each, shares = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local is_signin, max_bonus, bucket_ttl = ARGV[9] == '1', tonumber(ARGV[10]), tonumber(ARGV[11])
local nb = tonumber(ARGV[17])

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

local function reply(status, code, pts, streak, computed)
  local info = redis.call('HMGET', KEYS[1], 'r', 'i', 'x')
  local r = { status, code, tostring(pts), tostring(streak), info[1] or '', info[2] or '', info[3] or '0' }
  for _, v in ipairs(computed or totals(status == 'dup' and '' or code)) do r[#r + 1] = v end
  return r
end

for i = 0, nb - 1 do
  local v = redis.call('HGET', KEYS[8 + i], fp)
  if v then
    local s, code, pts, streak = string.match(v, '^(%d+):(%a)(%d+):(%d+)$')
    if s == seq then return reply('repeat', code, pts, streak) end
    return reply('dup', code, 0, 0)
  end
end

local code, pts, streak = 'c', 0, 0
local computed = nil
local info = redis.call('HMGET', KEYS[1], 'r', 'c')
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
    redis.call('HINCRBY', KEYS[2], counter, 1)
    if n < plimit then pts = pts_each end
    if is_signin then
      streak = tonumber(redis.call('HGET', KEYS[7], 'ss') or '0') + 1
      redis.call('HSET', KEYS[2], 'ss', streak)
      pts = pts_each + math.min(streak - 1, max_bonus)
    end
    -- One read and one write per period hash; the new totals are the reply.
    computed = {}
    for i = 2, 6 do
      local k = KEYS[i]
      local v = redis.call('HMGET', k, 's', 'sr', 'p', 'pr')
      local upd = {}
      if shares > 0 then
        v[1] = tostring(tonumber(v[1] or '0') + shares)
        if ts > tonumber(v[2] or '0') then v[2] = ARGV[4] end
        upd[#upd + 1] = 's'; upd[#upd + 1] = v[1]; upd[#upd + 1] = 'sr'; upd[#upd + 1] = v[2]
      end
      if pts > 0 then
        v[3] = tostring(tonumber(v[3] or '0') + pts)
        if ts > tonumber(v[4] or '0') then v[4] = ARGV[4] end
        upd[#upd + 1] = 'p'; upd[#upd + 1] = v[3]; upd[#upd + 1] = 'pr'; upd[#upd + 1] = v[4]
      end
      if #upd > 0 then redis.call('HSET', k, unpack(upd)) end
      for j = 1, 4 do computed[#computed + 1] = v[j] or '' end
      local ttl = tonumber(ARGV[10 + i])
      if ttl > 0 then redis.call('EXPIRE', k, ttl, 'NX') end
    end
  end
end

redis.call('HSET', KEYS[8], fp, seq .. ':' .. code .. pts .. ':' .. streak)
redis.call('EXPIRE', KEYS[8], bucket_ttl, 'NX')
return reply('new', code, pts, streak, computed)
