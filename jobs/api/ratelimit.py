"""Request budgets counted in fixed windows, atomically across web processes.

A budget is "N requests per period" for one bucket (a user, a client address).
Time is cut into windows of one period, aligned to the epoch; each request adds
one to its bucket's count for the current window, and the increment returns
the new count, so two requests can never both see the last free place.

Where the counts live:

* ``FileCounter`` (the default install: one machine, several gunicorn
  workers): one 16-byte file per bucket, read and written under an exclusive
  ``flock``. The lock is the kernel's, so it holds across processes and
  threads; no fsync, since a count lost in a crash costs nothing. Measured in
  ``bench/bench_throttle.py``: a few microseconds, where Django's file cache
  (a pickled list of timestamps per key, written whole through a temp file and
  a rename, without a lock) cost far more and let concurrent requests through.
* ``CacheCounter``, when the cache is Redis or Memcached (``CACHE_URL``): one
  key per bucket and window, ``add`` then ``incr``, which those servers do
  atomically; shared by every machine using that cache. On Django's Redis
  cache, ``RedisCounter`` does the same in one round trip, and a look at one
  budget with a count of another (``hit_unless_spent``: a right key's address
  check and its user's count) in one script.

Stale files (buckets not seen for two periods) are pruned now and then by the
request that creates a new file, under the same lock, so a bucket is never
counted in a file that is being removed.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import random
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

_RECORD = struct.Struct("<qq")  # window number, count
_PRUNE_CHANCE = 1 / 512


@dataclass(frozen=True)
class Count:
    """A bucket's count in the current window and the seconds until the window ends."""

    count: int
    resets_in: float


@dataclass(frozen=True)
class Guarded:
    """What ``hit_unless_spent`` did: the guard's count when that budget was
    used up (then nothing was counted), else the bucket's new count."""

    spent: Count | None
    counted: Count | None


class Counter(Protocol):
    def hit(self, bucket: str, period: int) -> Count: ...

    def peek(self, bucket: str, period: int) -> Count: ...

    def hit_unless_spent(self, guard: str, guard_period: int, guard_limit: int, bucket: str, period: int) -> Guarded:
        """Count ``bucket`` unless ``guard`` has reached ``guard_limit``."""
        ...


class _LookThenCount:
    """``hit_unless_spent`` as a look and then a count, for counters whose operations are local."""

    def hit_unless_spent(self, guard: str, guard_period: int, guard_limit: int, bucket: str, period: int) -> Guarded:
        seen = self.peek(guard, guard_period)
        if seen.count >= guard_limit:
            return Guarded(spent=seen, counted=None)
        return Guarded(spent=None, counted=self.hit(bucket, period))


def _window(period: int, now: float) -> tuple[int, float]:
    window = int(now // period)
    return window, (window + 1) * period - now


class FileCounter(_LookThenCount):
    """Counts in small files under ``directory``, one per bucket, locked with ``flock``."""

    def __init__(self, directory: Path) -> None:
        self.directory = str(directory)  # plain strings: pathlib would double the cost of a count

    def _path(self, bucket: str) -> str:
        name = hashlib.blake2b(bucket.encode(), digest_size=16).hexdigest()
        return f"{self.directory}/{name[:2]}/{name}"

    def _open(self, path: str) -> tuple[int, bool]:
        """An exclusively locked descriptor for ``path`` (made if missing); True when it is new."""
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            except FileNotFoundError:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                continue
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_nlink:
                return fd, os.fstat(fd).st_size == 0
            os.close(fd)  # pruned between open and lock: open the new one

    def hit(self, bucket: str, period: int) -> Count:
        window, resets_in = _window(period, time.time())
        path = self._path(bucket)
        fd, new = self._open(path)
        try:
            data = os.pread(fd, _RECORD.size, 0)
            stored, count = _RECORD.unpack(data) if len(data) == _RECORD.size else (0, 0)
            count = count + 1 if stored == window else 1
            os.pwrite(fd, _RECORD.pack(window, count), 0)
        finally:
            os.close(fd)  # releases the lock
        if new and random.random() < _PRUNE_CHANCE:
            self.prune(Path(path).parent, period)
        return Count(count, resets_in)

    def peek(self, bucket: str, period: int) -> Count:
        window, resets_in = _window(period, time.time())
        try:
            # A whole 16-byte pwrite is never seen half done by a pread, so no lock is needed to look.
            fd = os.open(self._path(bucket), os.O_RDONLY)
        except FileNotFoundError:
            return Count(0, resets_in)
        try:
            data = os.pread(fd, _RECORD.size, 0)
        finally:
            os.close(fd)
        stored, count = _RECORD.unpack(data) if len(data) == _RECORD.size else (0, 0)
        return Count(count if stored == window else 0, resets_in)

    def prune(self, folder: Path, period: int) -> None:
        """Remove the files in ``folder`` whose last count is two or more windows old."""
        current, _ = _window(period, time.time())
        for path in folder.iterdir():
            try:
                fd = os.open(path, os.O_RDWR)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                data = os.pread(fd, _RECORD.size, 0)
                stored = _RECORD.unpack(data)[0] if len(data) == _RECORD.size else 0
                if stored < current - 1:
                    os.unlink(path)  # while locked: a waiting hit sees nlink 0 and reopens
            finally:
                os.close(fd)


class CacheCounter(_LookThenCount):
    """Counts in a cache whose ``incr`` is atomic (Redis, Memcached): one key per bucket and window."""

    def __init__(self, cache) -> None:
        self.cache = cache

    def _key(self, bucket: str, window: int) -> str:
        return f"rl:{bucket}:{window}"

    def hit(self, bucket: str, period: int) -> Count:
        window, resets_in = _window(period, time.time())
        key = self._key(bucket, window)
        self.cache.add(key, 0, timeout=period + 1)
        try:
            count = self.cache.incr(key)
        except ValueError:  # expired between add and incr: the window has just ended
            self.cache.add(key, 1, timeout=period + 1)
            count = 1
        return Count(count, resets_in)

    def peek(self, bucket: str, period: int) -> Count:
        window, resets_in = _window(period, time.time())
        return Count(self.cache.get(self._key(bucket, window), 0), resets_in)


class RedisCounter(CacheCounter):
    """``CacheCounter``'s counts, on Django's Redis cache, sent to Redis directly.

    Through the cache's API a count is two round trips (add, then incr), and
    Django's Redis backend builds a new client (with its ~170 reply handlers)
    for every operation: with the failure budget's look, three per API request,
    which made the budgets most of the native poll's CPU beyond a plain view's
    (bench/RESULTS.md, the hot read). Here one client per process (redis-py's
    clients are thread-safe and pooled) and one round trip per count: the add
    and the increment in one MULTI, so no count outlives its window. The keys
    and values are the cache's own (its key prefix and version, plain integers
    as its serializer stores them), so both classes count the same buckets.
    """

    def __init__(self, cache) -> None:
        super().__init__(cache)
        self._client = None
        self._guarded_hit = None

    def _redis(self):
        if self._client is None:
            self._client = self.cache._cache.get_client(write=True)
        return self._client

    def hit(self, bucket: str, period: int) -> Count:
        window, resets_in = _window(period, time.time())
        key = self.cache.make_and_validate_key(self._key(bucket, window))
        pipe = self._redis().pipeline(transaction=True)
        pipe.set(key, 0, nx=True, ex=period + 1)
        pipe.incr(key)
        _, count = pipe.execute()
        return Count(count, resets_in)

    def peek(self, bucket: str, period: int) -> Count:
        window, resets_in = _window(period, time.time())
        value = self._redis().get(self.cache.make_and_validate_key(self._key(bucket, window)))
        return Count(int(value) if value is not None else 0, resets_in)

    def hit_unless_spent(self, guard: str, guard_period: int, guard_limit: int, bucket: str, period: int) -> Guarded:
        # One round trip where a look and a count were two: an API request's
        # budgets cost a Redis round trip each (bench/RESULTS.md, the hot read).
        if self._guarded_hit is None:
            self._guarded_hit = self._redis().register_script(_GUARDED_HIT)
        now = time.time()
        guard_window, guard_resets_in = _window(guard_period, now)
        window, resets_in = _window(period, now)
        done, count = self._guarded_hit(
            keys=[
                self.cache.make_and_validate_key(self._key(guard, guard_window)),
                self.cache.make_and_validate_key(self._key(bucket, window)),
            ],
            args=[guard_limit, period + 1],
        )
        if not done:
            return Guarded(spent=Count(count, guard_resets_in), counted=None)
        return Guarded(spent=None, counted=Count(count, resets_in))


# KEYS: the guard's key, the bucket's key; ARGV: the guard's limit, the bucket key's lifetime.
# Answers {0, the guard's count} when the guard is used up, else {1, the bucket's new count}.
_GUARDED_HIT = """
local seen = tonumber(redis.call('GET', KEYS[1]) or '0')
if seen >= tonumber(ARGV[1]) then
  return {0, seen}
end
redis.call('SET', KEYS[2], 0, 'NX', 'EX', ARGV[2])
return {1, redis.call('INCR', KEYS[2])}
"""


# Cache backends whose increment is one atomic server operation.
ATOMIC_CACHE_BACKENDS = ("RedisCache", "PyMemcacheCache", "PyLibMCCache")

_counter: tuple[tuple, Counter] | None = None


def counter() -> Counter:
    """The counter for this install: the shared cache when its increments are atomic,
    else files in ``RATE_LIMIT_DIR`` (``I2V_VAR_DIR/ratelimit``)."""
    global _counter
    from django.conf import settings
    from django.core.cache import caches

    config = settings.CACHES["default"]
    identity = (config["BACKEND"], str(config.get("LOCATION", "")), str(settings.RATE_LIMIT_DIR))
    if _counter is None or _counter[0] != identity:
        backend = config["BACKEND"].rsplit(".", 1)[-1]
        if config["BACKEND"] == "django.core.cache.backends.redis.RedisCache":
            chosen: Counter = RedisCounter(caches["default"])
        elif backend in ATOMIC_CACHE_BACKENDS:
            chosen = CacheCounter(caches["default"])
        else:
            chosen = FileCounter(Path(settings.RATE_LIMIT_DIR))
        _counter = (identity, chosen)
    return _counter[1]
