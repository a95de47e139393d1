-- Shared by every script. Numbers are written with num(): Lua's own conversion would write a
-- millisecond time as 1.7e+12. keep() never leaves a key without a TTL: a time already up
-- deletes it instead. Times come in below 2^53, where doubles are exact.
local function num(x) return string.format('%.0f', x) end

local function keep(key, ms)
  if ms > 0 then
    -- 2^50 ms: far beyond any real TTL, well within what PEXPIRE takes.
    redis.call('PEXPIRE', key, num(math.min(ms, 1125899906842624)))
  else
    redis.call('DEL', key)
  end
end

-- The ban index (KEYS ends, list): ended bans are dropped, at most 1000 per call so that a
-- backlog never makes one call slow.
local function index_prune(ends, list, now)
  local gone = redis.call('ZRANGEBYSCORE', ends, '-inf', num(now), 'LIMIT', 0, 1000)
  if #gone > 0 then
    redis.call('ZREM', ends, unpack(gone))
    redis.call('HDEL', list, unpack(gone))
  end
end

local function index_del(ends, list, client, now)
  index_prune(ends, list, now)
  redis.call('ZREM', ends, client)
  redis.call('HDEL', list, client)
end

local function index_put(ends, list, client, since, till, offence, reason, now)
  if till <= now then
    return index_del(ends, list, client, now)
  end
  index_prune(ends, list, now)
  redis.call('ZADD', ends, num(till), client)
  redis.call('HSET', list, client,
    num(since) .. ' ' .. num(till) .. ' ' .. num(offence) .. ' ' .. reason)
end

-- A client's offences (KEYS offences: n, till) remembered at `now`.
local function offences_at(key, now)
  local rec = redis.call('HMGET', key, 'n', 'till')
  local till = tonumber(rec[2])
  if till ~= nil and till > now then
    return tonumber(rec[1]) or 0
  end
  return 0
end
