"""A per-client-address limit on enrollment form posts (guessing account numbers or
hammering the password hasher from one address gets ``429``).

The address is the peer's; when the peer is a loopback reverse proxy, the last
``X-Forwarded-For`` entry (the one that proxy appended) instead: entries a client wrote
itself come before it and are ignored.  Memory is bounded: the oldest addresses go first.
"""
from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict, deque

POSTS = 10  # per address ...
WINDOW_SECONDS = 15 * 60  # ... in this long
MAX_ADDRESSES = 10_000


def client_address(request) -> str:
    peer = request.remote or ""
    try:
        loopback = ipaddress.ip_address(peer).is_loopback
    except ValueError:
        loopback = False
    forwarded = request.headers.get("X-Forwarded-For", "")
    if loopback and forwarded:
        last = forwarded.split(",")[-1].strip()
        try:
            return str(ipaddress.ip_address(last))
        except ValueError:
            return peer
    return peer


class RateLimiter:
    def __init__(self, posts: int = POSTS, window: float = WINDOW_SECONDS,
                 clock=time.monotonic):
        self.posts, self.window, self.clock = posts, window, clock
        self.seen: OrderedDict[str, deque] = OrderedDict()

    def allow(self, address: str) -> float:
        """0 if this post may go ahead (and count it); else seconds until one may."""
        now = self.clock()
        times = self.seen.pop(address, None) or deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        self.seen[address] = times
        if len(self.seen) > MAX_ADDRESSES:
            self.seen.popitem(last=False)
        if len(times) >= self.posts:
            return max(1.0, times[0] + self.window - now)
        times.append(now)
        return 0.0
