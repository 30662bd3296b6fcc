"""Which exceptions mean "a service we depend on is unreachable", not "this job is broken".

``pipeline.advance`` counts a step that raised as a failed attempt, and a job
whose attempts run out is quarantined: right for a bug that a job's data
triggers every time, wrong for an S3, database or broker outage, which would
otherwise quarantine every job that touches it for longer than a few retries
(bench/RESULTS.md, "The fault gauntlet"). Errors named here are retried
without counting, until the job's own time limit.
"""

from __future__ import annotations

import socket

from django.db import InterfaceError, OperationalError

_INFRA_TYPES: tuple[type[BaseException], ...] = (
    # The OS's word for a peer that refused, reset, vanished or did not answer
    # (BrokenPipeError, ConnectionRefusedError, ConnectionResetError, ...).
    ConnectionError,
    TimeoutError,
    socket.gaierror,  # the storage endpoint's name did not resolve
    OperationalError,
    InterfaceError,
)

try:  # boto3 is only there with S3 storage
    from botocore.exceptions import ClientError as _BotoClientError
    from botocore.exceptions import ConnectionError as _BotoConnectionError
    from botocore.exceptions import HTTPClientError as _BotoHTTPClientError

    # EndpointConnectionError, ConnectTimeoutError (ConnectionError);
    # ConnectionClosedError, ReadTimeoutError, ResponseStreamingError (HTTPClientError).
    _INFRA_TYPES += (_BotoConnectionError, _BotoHTTPClientError)
except ImportError:  # pragma: no cover - without boto3 there is no S3 to lose
    _BotoClientError = None

try:
    from redis.exceptions import ConnectionError as _RedisConnectionError
    from redis.exceptions import TimeoutError as _RedisTimeoutError

    _INFRA_TYPES += (_RedisConnectionError, _RedisTimeoutError)
except ImportError:  # pragma: no cover - the Redis client comes with the Redis broker or cache
    pass


def is_infrastructure_error(exc: BaseException) -> bool:
    """True when ``exc`` (or an exception it was raised from or during) says a
    service was unreachable or overloaded: storage, database, broker, cache."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if type(current) is BrokenPipeError:
            # A bare one is a pipe to a child process (ffmpeg choking on a bad
            # file, say), which may well be this job's fault; clients of
            # remote services wrap theirs in their own errors.
            return False
        if isinstance(current, _INFRA_TYPES) or _is_storage_overload(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _is_storage_overload(exc: BaseException) -> bool:
    # S3's 500 InternalError and 503 SlowDown say "try again", not "this object is wrong".
    if _BotoClientError is None or not isinstance(exc, _BotoClientError):
        return False
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return status >= 500
