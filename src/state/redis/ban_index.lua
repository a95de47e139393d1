-- The ban index on its own: the listing, and on a cluster (where the index is in another
-- slot than the client's keys) the update that follows a ban's change.
-- KEYS: ban index ends, ban index list
-- ARGV: 'list', now | 'put', now, client, since, till, offence, reason | 'del', now, client
local now = tonumber(ARGV[2])
if ARGV[1] == 'put' then
  index_put(KEYS[1], KEYS[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]),
    tonumber(ARGV[6]), ARGV[7], now)
  return {}
elseif ARGV[1] == 'del' then
  index_del(KEYS[1], KEYS[2], ARGV[3], now)
  return {}
end
index_prune(KEYS[1], KEYS[2], now)
return redis.call('HGETALL', KEYS[2])
