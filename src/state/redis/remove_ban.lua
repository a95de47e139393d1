-- MemoryStore::remove_ban: lifts the ban and forgets the failures; the offence count stays,
-- so the client's next ban is still a repeat.
-- KEYS: ban, the failures of each trigger (ARGV[3] of them) [, ban index ends, ban index list]
-- ARGV: now, client, number of failure keys
-- Returns 1 if a ban was in force.
local now = tonumber(ARGV[1])
local last = 1 + tonumber(ARGV[3])
local till = tonumber(redis.call('HGET', KEYS[1], 'till'))
redis.call('DEL', unpack(KEYS, 1, last))
if #KEYS >= last + 2 then
  index_del(KEYS[last + 1], KEYS[last + 2], ARGV[2], now)
end
if till ~= nil and till > now then return 1 end
return 0
