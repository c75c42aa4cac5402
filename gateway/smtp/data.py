"""Reading DATA into one buffer: a 20 MB message costs about 20 MB while it arrives.

aiosmtpd 1.4 keeps every line of DATA as its own bytearray (some 60 bytes of overhead per
line: 270,000 lines for 20 MB of base64) and then joins them, so a message needs twice
its size or more at the end of DATA, and ten at once add up.  This is aiosmtpd's own DATA
loop (same replies, same size and line-length limits, same dot-unstuffing) writing each
line into one ``io.BytesIO``, whose ``getvalue()`` hands its buffer over without a copy.
"""
from __future__ import annotations

import asyncio
import io
import logging

from aiosmtpd.smtp import MISSING, _DataState

log = logging.getLogger("gateway.smtp")


async def receive_data(server) -> None:
    """The DATA command after its checks: 354, the lines, then the handler's reply."""
    await server.push("354 End data with <CR><LF>.<CR><LF>")
    buffer, state = io.BytesIO(), _DataState.NOMINAL
    size, limit, fragments = 0, server.data_size_limit, []
    while server.transport is not None:
        try:
            line = await server._reader.readuntil(b"\r\n")
        except asyncio.CancelledError:
            log.info("connection lost during DATA")
            server._writer.close()
            raise
        except asyncio.LimitOverrunError as e:
            if state == _DataState.NOMINAL:
                state = _DataState.TOO_LONG
            buffer = io.BytesIO()  # discard what came so far: nothing more is kept
            line = await server._reader.read(e.consumed)
        if not fragments and line == b".\r\n":
            break
        size += len(line)
        if state == _DataState.NOMINAL and limit and size > limit:
            state, buffer = _DataState.TOO_MUCH, io.BytesIO()
        fragments.append(line)
        if line.endswith(b"\r\n"):
            if state == _DataState.NOMINAL:
                line = b"".join(fragments) if len(fragments) > 1 else line
                if len(line) > server.line_length_limit:
                    state, buffer = _DataState.TOO_LONG, io.BytesIO()
                else:  # RFC 5321 4.5.2: a leading dot was doubled by the client
                    buffer.write(memoryview(line)[1:] if line[:1] == b"." else line)
            fragments = []
    if state != _DataState.NOMINAL:
        await server.push("500 Line too long (see RFC5321 4.5.3.1.6)"
                          if state == _DataState.TOO_LONG else "552 Error: Too much mail data")
        server._set_post_data_state()
        return
    content = buffer.getvalue()
    del buffer
    server.envelope.content = server.envelope.original_content = content
    status = await server._call_handler_hook("DATA")
    server._set_post_data_state()
    await server.push("250 OK" if status is MISSING else status)
