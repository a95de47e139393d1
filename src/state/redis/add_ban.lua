-- MemoryStore::add_ban: the ban replaces any other; the offence count is the larger of the
-- ban's and the one remembered, and is remembered as long as the ban lasts.
-- KEYS: ban, offences [, ban index ends, ban index list]
-- ARGV: since (taken as now), till, offence, reason, client
local now = tonumber(ARGV[1])
local till = tonumber(ARGV[2])
local offence = tonumber(ARGV[3])
local remembered = math.max(offences_at(KEYS[2], now), offence)
redis.call('DEL', KEYS[1], KEYS[2])
if till > now then
  redis.call('HSET', KEYS[1], 'since', num(now), 'till', num(till),
    'offence', num(offence), 'reason', ARGV[4])
  keep(KEYS[1], till - now)
  redis.call('HSET', KEYS[2], 'n', num(remembered), 'till', num(till))
  keep(KEYS[2], till - now)
end
if #KEYS >= 4 then
  index_put(KEYS[3], KEYS[4], ARGV[5], now, till, offence, ARGV[4], now)
end
return 1
