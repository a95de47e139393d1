-- MemoryStore::record_failure in one atomic call.
-- KEYS: failures, ban, offences [, ban index ends, ban index list]
-- ARGV: now, window, digest, user, threshold, ban_time, max_ban_time, repeat_window, client,
--       reason
-- Returns {client count, user count, repeated, banned, since, till, offence}.
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local field = 'd' .. ARGV[3]
local user = ARGV[4]
local threshold = tonumber(ARGV[5])
-- The window keeps at most `threshold` failures (one for a trigger that is off).
local cap = math.max(threshold, 1)

-- The window runs from its first failure (FailureWindow), not from the latest.
local start = tonumber(redis.call('HGET', KEYS[1], 's'))
if start == nil or now >= start + window then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 's', num(now))
  keep(KEYS[1], math.max(window, 1))
end

local repeated = redis.call('HEXISTS', KEYS[1], field) == 1
local count = redis.call('HLEN', KEYS[1]) - 1
if not repeated and count < cap then
  redis.call('HSET', KEYS[1], field, user)
  count = count + 1
end
-- At most `cap` entries, so this walk is short.
local same = 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if all[i] ~= 's' and all[i + 1] == user then same = same + 1 end
end

local banned, since, till, offence = 0, 0, 0, 0
if threshold > 0 and count >= threshold then
  -- The next ban starts counting afresh.
  redis.call('DEL', KEYS[1])
  local current = tonumber(redis.call('HGET', KEYS[2], 'till'))
  if current == nil or current <= now then
    offence = offences_at(KEYS[3], now) + 1
    -- BanRule::length: doubled for each repeat (31 doublings at most), never past the cap.
    local length = tonumber(ARGV[6])
    local longest = tonumber(ARGV[7])
    for _ = 2, math.min(offence, 32) do
      if length >= longest then break end
      length = length * 2
    end
    length = math.min(length, longest)
    since = now
    till = now + length
    local remember = math.max(till, now + tonumber(ARGV[8]))
    redis.call('DEL', KEYS[2])
    if till > now then
      redis.call('HSET', KEYS[2], 'since', num(since), 'till', num(till),
        'offence', num(offence), 'reason', ARGV[10])
      keep(KEYS[2], till - now)
    end
    redis.call('HSET', KEYS[3], 'n', num(offence), 'till', num(remember))
    keep(KEYS[3], remember - now)
    if #KEYS >= 5 then
      index_put(KEYS[4], KEYS[5], ARGV[9], since, till, offence, ARGV[10], now)
    end
    banned = 1
  end
end
return {count, same, repeated and 1 or 0, banned, since, till, offence}
