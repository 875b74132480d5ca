-- One key's shared quota: two buckets (its requests and its tokens) and the time until which
-- the provider said the key is exhausted. A bucket is kept as the instant (microseconds on
-- Redis's clock) at which it is full again, and its Redis key expires then, so a missing key
-- is a full bucket. Each token stands for window/limit of time. The Go side keeps the same
-- representation for the local limits (bucket.go).
--
-- KEYS[1] requests bucket, KEYS[2] tokens bucket, KEYS[3] exhausted-until.
-- ARGV[1] 'admit' or 'adjust'; ARGV[2] requests limit and ARGV[3] tokens limit per window
-- (0: none); ARGV[4] window (microseconds).
--
-- admit:  ARGV[5] tokens asked, ARGV[6] the longest the caller may wait, ARGV[7] the
--         headroom added to any wait for a bucket's refill (microseconds; see
--         Config.Headroom). Takes one request and the tokens when the wait fits. Returns {admitted 0 or 1,
--         wait in microseconds, the limit that needs the longest wait (1 requests, 2 tokens,
--         4 exhausted), then how long until each bucket is full again and until the
--         exhaustion ends (microseconds)}.
-- adjust: ARGV[5] requests and ARGV[6] tokens to give back (negative: take more);
--         ARGV[7] requests and ARGV[8] tokens that remain, as the provider or a replica back
--         from an outage said (below -1000000000: not said; a replica's may be negative);
--         ARGV[9] exhausted for the next microseconds (0: not said). Returns 1.
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local window = tonumber(ARGV[4])
local limits = {tonumber(ARGV[2]), tonumber(ARGV[3])}

-- ahead returns how long until bucket i is full again.
local function ahead(i)
  return math.max(tonumber(redis.call('GET', KEYS[i]) or 0) - now, 0)
end

-- store makes bucket i full again a from now; the debt is bounded at one window.
local function store(i, a)
  a = math.min(a, 2 * window)
  if a <= 0 then
    redis.call('DEL', KEYS[i])
  else
    redis.call('SET', KEYS[i], string.format('%.0f', now + a), 'PX', math.ceil(a / 1000) + 1)
  end
end

if ARGV[1] == 'admit' then
  local asked = {1, tonumber(ARGV[5])}
  local exhausted = math.ceil(math.max(tonumber(redis.call('GET', KEYS[3]) or 0) - now, 0))
  local wait, kind = exhausted, 4
  local aheads = {0, 0}
  for i = 1, 2 do
    local limit = limits[i]
    if limit > 0 then
      aheads[i] = ahead(i)
      local w = aheads[i] - (limit - math.min(asked[i], limit)) * window / limit
      if w > 0 then w = w + tonumber(ARGV[7]) end
      if w > wait then wait, kind = w, i end
    end
  end
  wait = math.ceil(wait)
  local admitted = 0
  if wait <= tonumber(ARGV[6]) then
    admitted = 1
    for i = 1, 2 do
      if limits[i] > 0 and asked[i] > 0 then
        aheads[i] = math.min(aheads[i] + asked[i] * window / limits[i], 2 * window)
        store(i, aheads[i])
      end
    end
  end
  return {admitted, wait, kind, math.ceil(aheads[1]), math.ceil(aheads[2]), exhausted}
end

for i = 1, 2 do
  local limit, give, remaining = limits[i], tonumber(ARGV[4 + i]), tonumber(ARGV[6 + i])
  if limit > 0 and (give ~= 0 or remaining > -1000000000) then
    local per = window / limit
    local a = ahead(i) - give * per
    if remaining > -1000000000 and remaining < limit then a = math.max(a, (limit - remaining) * per) end
    store(i, a)
  end
end
local exhausted = tonumber(ARGV[9])
if exhausted > 0 and now + exhausted > tonumber(redis.call('GET', KEYS[3]) or 0) then
  redis.call('SET', KEYS[3], string.format('%.0f', now + exhausted), 'PX', math.ceil(exhausted / 1000) + 1)
end
return 1
