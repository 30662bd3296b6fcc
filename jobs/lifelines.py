"""Child processes that cannot outlive their parent, and stopping a whole tree.

A process killed with SIGKILL (the out-of-memory killer, ``kill -9``) runs no
clean-up, so its children would keep running, holding ports and queue rows.
Linux's ``PR_SET_PDEATHSIG`` has the kernel signal a child when its parent
dies. It covers one generation only and is cleared by ``fork``, so every
generation sets it again: ``serve`` for its components, the cluster's
at-fork hook for the django-q2 processes, gunicorn's ``post_fork`` hook for
its workers. Elsewhere than Linux these helpers do nothing.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1

_libc = None


def set_death_signal(sig: int, parent_pid: int | None = None) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies.

    ``parent_pid`` closes the race where the parent died before the call: the
    process then signals itself at once.
    """
    global _libc
    if not sys.platform.startswith("linux"):
        return
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    _libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if parent_pid is not None and os.getppid() != parent_pid:
        os.kill(os.getpid(), sig)


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn`` for ``subprocess.Popen``: the child gets ``sig`` when we die."""
    parent = os.getpid()
    return lambda: set_death_signal(sig, parent)


def start_child(command: list[str], *, death_signal: int = signal.SIGTERM, **popen) -> subprocess.Popen:
    """Start ``command`` in a process group of its own, tied to our life.

    Its own group lets us stop it and everything it forked with one signal,
    and keeps a Ctrl-C in the terminal from reaching it before we decide.
    """
    return subprocess.Popen(command, start_new_session=True, preexec_fn=die_with_parent(death_signal), **popen)


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Signal the process group ``proc`` leads (its children, orphans included)."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_tree(proc: subprocess.Popen, grace: float) -> int | None:
    """SIGTERM ``proc``; after ``grace`` seconds SIGKILL its whole group (at
    once when ``grace`` is 0).

    The group is killed even when ``proc`` stopped in time: a child it left
    behind (a django-q2 worker whose parent died) would otherwise live on.
    """
    if proc.poll() is None and grace > 0:
        try:
            proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            log.warning("process %s did not stop within %.0f s of SIGTERM; killing its group", proc.pid, grace)
    kill_group(proc)
    try:
        return proc.wait(10)
    except subprocess.TimeoutExpired:  # pragma: no cover - only a process stuck in the kernel
        return None
