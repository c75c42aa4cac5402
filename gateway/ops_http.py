"""The ops listener: ``/healthz`` and Prometheus ``/metrics`` on ``[http] ops_host`` and
``ops_port`` (default loopback), apart from the public enrollment page, so a proxy that
exposes ``/enroll`` exposes nothing else.  Anything else here is 404.
"""
from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from sqlalchemy import text

from gateway.enrollment.web import (LISTENERS, SERVICES, AccessLogger, HttpRunner,
                                    security_headers)

log = logging.getLogger("gateway.http")


def _db_answers(services) -> bool:
    with services.engine.connect() as conn:
        return conn.execute(text("select 1")).scalar() == 1


async def healthz(request: web.Request) -> web.Response:
    """200 when the database answers, every listener is serving and the outbox is not stuck
    (no due mail has waited longer than [gateway] outbox_stuck_minutes for a worker); 503
    otherwise.  The JSON names each check and, on 503, the reasons."""
    from gateway import metrics
    from gateway.clock import utcnow as now
    services = request.app[SERVICES]
    checks, reasons = {}, []

    def database():
        if not _db_answers(services):
            raise OSError("database did not answer")
        return metrics.snapshot(services, now())

    try:
        snap = await asyncio.wait_for(asyncio.to_thread(database), 5)
        checks["database"] = "ok"
    except Exception as e:
        snap = None
        checks["database"] = "unavailable"
        reasons.append(f"database unreachable ({type(e).__name__})")
    listeners = request.app.get(LISTENERS)
    if listeners is not None:
        checks["listeners"] = states = {name: "up" if up else "down"
                                        for name, up in listeners().items()}
        reasons += [f"{name} listener is down" for name, st in states.items() if st != "up"]
    if snap is not None:
        limit = services.cfg.gateway.outbox_stuck_minutes * 60
        checks["outbox"] = {"depth": snap["outbox"].get("queued", 0),
                            "oldest_age_seconds": round(snap["outbox_oldest_age"]),
                            "due_wait_seconds": round(snap["outbox_due_wait"])}
        if limit > 0 and snap["outbox_due_wait"] > limit:
            reasons.append(f"outbox stuck: due mail has waited "
                           f"{round(snap['outbox_due_wait'])} s for a worker "
                           f"(limit {round(limit)} s)")
    body = {"status": "unavailable" if reasons else "ok", "checks": checks}
    if reasons:
        body["reason"] = "; ".join(reasons)
    return web.json_response(body, status=503 if reasons else 200)


async def metrics_page(request: web.Request) -> web.Response:
    """Prometheus text format: this process's counters and the database gauges."""
    from gateway import metrics
    body = await asyncio.to_thread(metrics.render, request.app[SERVICES])
    return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})


def make_ops_app(services, listeners=None) -> web.Application:
    app = web.Application(middlewares=[security_headers], client_max_size=1024)
    app[SERVICES] = services
    if listeners is not None:
        app[LISTENERS] = listeners
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_page)
    return app


async def start_ops(services, host: str, port: int, listeners=None) -> HttpRunner:
    """Serve /healthz and /metrics on host:port (0: any free port; see runner.port)."""
    runner = HttpRunner(make_ops_app(services, listeners), access_log_class=AccessLogger)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("ops http listening", extra={"ops": f"{host}:{runner.port}"})
    return runner
