"""``modules/fifo_lock.py`` of WebUI 1.10.1: the FIFO lock behind ``call_queue.queue_lock``.

Like the WebUI's: ``acquire(blocking=True)`` / ``release()`` / a context manager, waiters served
in arrival order, **not reentrant** (a thread that holds it and takes it again blocks for ever) and
**no ``locked()``** (code that asks the real lock whether it is held fails with AttributeError).
Tests that need to know use the fake-only ``_fake.lock_held(lock)``.
"""

from __future__ import annotations

import collections
import threading


class FIFOLock:
    def __init__(self):
        self._lock = threading.Lock()
        self._inner_lock = threading.Lock()
        self._pending_threads = collections.deque()

    def acquire(self, blocking=True):
        with self._inner_lock:
            if self._lock.acquire(False):
                return True
            if not blocking:
                return False
            turn = threading.Event()
            self._pending_threads.append(turn)
        turn.wait()  # set by the release that hands the lock on
        return self._lock.acquire()

    def release(self):
        with self._inner_lock:
            if self._pending_threads:
                self._pending_threads.popleft().set()
            self._lock.release()

    __enter__ = acquire

    def __exit__(self, t, v, tb):
        self.release()
