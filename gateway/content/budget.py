"""A per-message CPU budget for the content steps.  Pure library.

Time is the CPU time of the calling thread (``time.thread_time``), so waiting for the
interpreter lock or the disk does not count, and several messages analysed in parallel
each get their own budget.  Checks are cooperative: between steps, between MIME parts and
between chunks of an HTML document; with every pattern on message content linear, no
single stretch between checks can run away.
"""
from __future__ import annotations

import time


class OverBudget(Exception):
    """The message used more CPU than its budget."""


class Budget:
    def __init__(self, seconds: float):
        self.seconds = float(seconds)
        self.start = time.thread_time()
        self.wall_start = time.perf_counter()

    def used(self) -> float:
        return time.thread_time() - self.start

    def check(self) -> None:
        # A thread cannot have used more CPU than the wall time that passed: the cheap
        # clock answers most checks (reading the thread's CPU clock is a system call).
        if time.perf_counter() - self.wall_start <= self.seconds:
            return
        if self.used() > self.seconds:
            raise OverBudget()
