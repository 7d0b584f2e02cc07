-- Palaver's matchmaking queue in Redis. Every operation is this one script,
-- so each runs atomically: no two nodes can take the same ticket, and a
-- new ticket is compared with every waiting one before anyone else acts.
--
-- ARGV: 1 key base (with a hash tag, so every key lives in one slot),
--       2 command (enqueue | leave | rescan | ticket | waiting),
--       3 widen_level_after_ms, 4 widen_language_after_ms, 5 repeat_after_ms,
--       6 now_ms, 7 argument (a ticket as JSON, or a user id).
--
-- Keys under the base:
--   t:{uid}                      the ticket (JSON: uid, ct, lang, level 0-2, natives, excl, enq)
--   r:{uid}                      sorted set: partners matched, scored by when (ms)
--   s0, s1, s2                   sorted sets of uids by enqueue time: the widening stage each
--                                ticket was last compared at (rescans move them along)
--   C:{ct}:{learn}:{native}:{lvl} tickets by what they learn, speak natively, and their level
--   S:{ct}:{learn}:{lvl}         tickets by what they learn and their level
--   N:{ct}:{native}              tickets by a language they speak natively
-- Every bucket is scored by enqueue time, so its first eligible member is
-- the one who waited longest. The rule (tier_of) is the one in mod.rs.

local base = ARGV[1]
local cmd = ARGV[2]
local WL = tonumber(ARGV[3])
local WLANG = tonumber(ARGV[4])
local REPEAT = tonumber(ARGV[5])
local now = tonumber(ARGV[6])
local arg = ARGV[7]

-- How many excluded members a bucket scan skips before giving up on it.
local SKIP_CAP = 200
-- How many tickets one rescan compares (the rest wait for the next tick).
local RESCAN_CAP = 2000

local function k(...)
  return base .. ':' .. table.concat({ ... }, ':')
end

local function contains(list, value)
  for _, v in ipairs(list) do
    if v == value then return true end
  end
  return false
end

local function buckets(t)
  local out = {}
  for _, n in ipairs(t.natives) do
    out[#out + 1] = k('C', t.ct, t.lang, n, t.level)
    out[#out + 1] = k('N', t.ct, n)
  end
  out[#out + 1] = k('S', t.ct, t.lang, t.level)
  return out
end

-- A ticket, decoded, with its JSON kept as `raw`: results return the JSON
-- as stored (re-encoding would turn an empty list into an object).
local function load(uid)
  local raw = redis.call('GET', k('t', uid))
  if not raw then return nil end
  local t = cjson.decode(raw)
  t.raw = raw
  return t
end

local function stage_of(t)
  local waited = now - t.enq
  if waited >= WLANG then return 2 elseif waited >= WL then return 1 else return 0 end
end

local function remove(uid)
  local t = load(uid)
  if not t then return nil end
  for _, b in ipairs(buckets(t)) do redis.call('ZREM', b, uid) end
  redis.call('ZREM', k('s0'), uid)
  redis.call('ZREM', k('s1'), uid)
  redis.call('ZREM', k('s2'), uid)
  redis.call('DEL', k('t', uid))
  return t
end

local function insert(t, raw)
  redis.call('SET', k('t', t.uid), raw)
  for _, b in ipairs(buckets(t)) do redis.call('ZADD', b, t.enq, t.uid) end
  redis.call('ZADD', k('s' .. stage_of(t)), t.enq, t.uid)
end

local function tier_of(a, b)
  if a.ct ~= b.ct or a.uid == b.uid then return nil end
  local waited = now - math.min(a.enq, b.enq)
  local levels_ok = math.abs(a.level - b.level) <= 1 or waited >= WL
  local a_teaches_b = contains(a.natives, b.lang)
  local b_teaches_a = contains(b.natives, a.lang)
  if a_teaches_b and b_teaches_a and levels_ok then return 0 end
  if a.lang == b.lang and levels_ok then return 1 end
  if (a_teaches_b or b_teaches_a) and waited >= WLANG then return 2 end
  return nil
end

local function met_recently(a, b)
  local at = redis.call('ZSCORE', k('r', a.uid), b.uid)
  return at and tonumber(at) > now - REPEAT
end

-- The first member of a bucket that `a` may meet (not excluded either way,
-- not met recently), and its tier; its tier is the best in the bucket,
-- since members of a bucket differ only in how long they waited.
local function bucket_head(a, key)
  local offset = 0
  local skipped = 0
  while skipped < SKIP_CAP do
    local members = redis.call('ZRANGE', key, offset, offset + 15)
    if #members == 0 then return nil end
    for _, uid in ipairs(members) do
      if uid ~= a.uid then
        local b = load(uid)
        if b and not contains(a.excl, b.uid) and not contains(b.excl, a.uid) and not met_recently(a, b) then
          local t = tier_of(a, b)
          if t == nil then return nil end
          return b, t
        end
        skipped = skipped + 1
      end
    end
    offset = offset + #members
  end
  return nil
end

local function best_partner(a)
  local best, best_tier = nil, nil
  local function consider(key)
    local b, t = bucket_head(a, key)
    if b and (best == nil or t < best_tier or (t == best_tier and b.enq < best.enq)) then
      best, best_tier = b, t
    end
  end
  for lvl = 0, 2 do
    for _, n in ipairs(a.natives) do consider(k('C', a.ct, n, a.lang, lvl)) end
  end
  if best_tier == 0 then return best, best_tier end
  for lvl = 0, 2 do consider(k('S', a.ct, a.lang, lvl)) end
  if best_tier == 1 then return best, best_tier end
  consider(k('N', a.ct, a.lang))
  for lvl = 0, 2 do
    for _, n in ipairs(a.natives) do consider(k('S', a.ct, n, lvl)) end
  end
  return best, best_tier
end

local function pair(a, b, t)
  remove(b.uid)
  for _, p in ipairs({ { a, b }, { b, a } }) do
    local key = k('r', p[1].uid)
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - REPEAT)
    redis.call('ZADD', key, now, p[2].uid)
    redis.call('PEXPIRE', key, REPEAT)
  end
  return { a.raw, b.raw, t }
end

if cmd == 'enqueue' then
  local a = cjson.decode(arg)
  a.raw = arg
  remove(a.uid)
  local b, t = best_partner(a)
  if b then return pair(a, b, t) end
  insert(a, arg)
  return false
elseif cmd == 'leave' then
  if remove(arg) then return 1 else return 0 end
elseif cmd == 'rescan' then
  local out = {}
  local done = 0
  for from = 0, 1 do
    local threshold = (from == 0) and WL or WLANG
    local due = redis.call('ZRANGEBYSCORE', k('s' .. from), '-inf', now - threshold, 'LIMIT', 0, RESCAN_CAP - done)
    for _, uid in ipairs(due) do
      local a = load(uid)
      if a then
        done = done + 1
        local b, t = best_partner(a)
        if b then
          remove(a.uid)
          out[#out + 1] = pair(a, b, t)
        else
          redis.call('ZREM', k('s' .. from), uid)
          redis.call('ZADD', k('s' .. stage_of(a)), a.enq, uid)
        end
      end
    end
  end
  return out
elseif cmd == 'ticket' then
  return redis.call('GET', k('t', arg))
elseif cmd == 'waiting' then
  local out = {}
  for s = 0, 2 do
    for _, uid in ipairs(redis.call('ZRANGE', k('s' .. s), 0, -1)) do
      out[#out + 1] = redis.call('GET', k('t', uid))
    end
  end
  return out
end
return redis.error_reply('unknown matcher command ' .. tostring(cmd))
