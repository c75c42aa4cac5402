"""Step: open a thread for a new conversation, or continue the token's thread.

The reply clock (`reply_within_hours`) starts at the patient's message; a thread that was
answered, closed or only waiting for a reply to a notification gets a new clock.  An
emergency runs on the urgent clock (`urgent_reply_minutes`): the thread is due that soon
after the message, or sooner if it already was.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import insert, select

from gateway.content.mime import header_text
from gateway.addresses import new_token
from gateway.clock import utcnow
from gateway.models import Thread, Token

_TOKENS, _THREADS = Token.__table__, Thread.__table__
_INSERT_THREAD = insert(_THREADS).returning(_THREADS.c.id)


def open_thread(session, patient_id: int, kind: str | None, state: str,
                proxy_id: int | None = None) -> Thread:
    """A new thread with its reply and staff tokens; with `proxy_id` the conversation is
    with that proxy (staff answers go to it, within its scope)."""
    thread = new_thread(patient_id, kind, state, proxy_id)
    return write_thread(session, thread)


def new_thread(patient_id: int, kind: str | None, state: str,
               proxy_id: int | None = None) -> Thread:
    """A thread not yet written: set its fields, then `write_thread` (one INSERT)."""
    return Thread(public_id=new_token(), patient_id=patient_id, kind=kind, state=state,
                  proxy_id=proxy_id)


def write_thread(session, thread: Thread) -> Thread:
    """Insert THREAD (flushed: its id is known) and its reply and staff tokens (one Core
    statement)."""
    session.add(thread)
    session.flush()
    return _with_tokens(session, thread)


def insert_thread(session, thread: Thread) -> Thread:
    """Like `write_thread` for a thread written once with its final fields: one Core
    insert, no unit-of-work flush; THREAD stays out of SESSION (later changes to it are
    not written)."""
    now = utcnow()
    for column in _THREADS.columns:  # the model's defaults, so THREAD shows what is stored
        if column.key != "id" and getattr(thread, column.key) is None \
                and column.default is not None:
            setattr(thread, column.key, now if column.key == "created_at"
                    else column.default.arg)
    values = {c.key: getattr(thread, c.key) for c in _THREADS.columns if c.key != "id"}
    thread.id = session.connection().execute(_INSERT_THREAD, values).scalar_one()
    return _with_tokens(session, thread)


def _with_tokens(session, thread: Thread) -> Thread:
    """THREAD's reply and staff tokens, inserted with one Core statement."""
    tokens = {purpose: new_token() for purpose in ("reply", "staff")}
    now = utcnow()
    session.connection().execute(insert(_TOKENS), [
        dict(token=token, purpose=purpose, thread_id=thread.id,
             patient_id=thread.patient_id, created_at=now)
        for purpose, token in tokens.items()])
    thread.portal_tokens = tokens  # known: no query (and no flush) to find them again
    return thread


def thread_token(session, thread: Thread, purpose: str) -> str:
    known = getattr(thread, "portal_tokens", None) or {}
    if purpose in known:
        return known[purpose]
    token = session.scalar(select(Token.token).where(Token.thread_id == thread.id,
                                                     Token.purpose == purpose))
    if token is None:
        token = new_token()
        session.add(Token(token=token, purpose=purpose, thread_id=thread.id,
                          patient_id=thread.patient_id))
    else:  # stored already, so safe to remember (a new one may yet be rolled back)
        thread.portal_tokens = {**known, purpose: token}
    return token


def attach_thread(ctx) -> None:
    """The token's thread, or a new one written once with its final fields."""
    cls = ctx.classification
    thread = ctx.token_thread or new_thread(
        ctx.patient.id, None, "open", ctx.proxy.id if ctx.proxy is not None else None)
    if ctx.scope is not None and not ctx.scope.within:
        thread.outside_scope = True  # sticky: answers on it are held from the proxy
    now = utcnow()
    policy = ctx.services.cfg.policy
    if thread.due_at is None or thread.state != "open":
        thread.due_at = now + dt.timedelta(hours=policy.reply_within_hours)
        thread.state = "open"
        thread.answered_at = None
    if cls.urgent:
        thread.due_at = min(thread.due_at,
                            now + dt.timedelta(minutes=policy.urgent_reply_minutes))
    if cls.urgent or thread.category in (None, "other"):
        thread.category = cls.category
    thread.urgent = bool(thread.urgent or cls.urgent)
    thread.team = ", ".join(ctx.services.cfg.team_for(thread.category))
    message_id = (header_text(ctx.msg, "Message-ID") or "").strip()
    if message_id:
        thread.last_message_id = message_id[:998]
        chain = ((thread.ref_chain or "") + " " + message_id).split()
        thread.ref_chain = " ".join(chain[-20:])
    if thread.id is None:  # new: nothing in the patient chain changes it after this
        insert_thread(ctx.session, thread)
    ctx.thread = thread
