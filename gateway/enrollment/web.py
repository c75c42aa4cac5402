"""The HTTP listener: the enrollment page, /healthz and /metrics.

``GET /enroll?token=T`` shows the form (or why the link cannot be used); ``POST /enroll``
checks everything (gateway.enrollment.enroll) and shows what happens next.  Pages are
Jinja2 templates under ``templates/pages/`` (autoescaped), plain HTML without JavaScript.

CSRF: a double-submit token: a random value in a ``SameSite=Strict; HttpOnly`` cookie and
the same value in a hidden field; a POST whose two values differ is refused.

No token or password is ever logged: the access log records the path without the query,
the form moves the token out of the URL, and responses say ``Referrer-Policy: no-referrer``
so the link does not leak to other sites.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import secrets

import jinja2
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from sqlalchemy import text

from gateway.clock import utcnow
from gateway.enrollment import enroll as enrollment

log = logging.getLogger("gateway.http")

CSRF_COOKIE = "enroll_csrf"
STATUS_CLOSED = {"unknown": 404, "unavailable": 403}  # every other closed state: 410
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}
SERVICES = web.AppKey("services", object)
PAGES = web.AppKey("pages", jinja2.Environment)
CLOCK = web.AppKey("clock", object)
LISTENERS = web.AppKey("listeners", object)  # () -> {name: serving?}, set by serve


class AccessLogger(AbstractAccessLogger):
    """One line per request: method, path (never the query: it may hold a token), status."""

    def log(self, request, response, time_taken: float) -> None:
        level = logging.DEBUG if request.path in ("/healthz", "/metrics") else logging.INFO
        log.log(level, "http request", extra={"method": request.method, "path": request.path,
                                        "status": response.status,
                                        "ms": round(time_taken * 1000, 1)})


class HttpRunner(web.AppRunner):
    @property
    def port(self) -> int:
        """The port actually bound (the configured one, or the one picked for port 0)."""
        return self.addresses[0][1]


def page_env(services) -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(services.cfg.templates_dir)),
                              autoescape=True, undefined=jinja2.StrictUndefined)


def _practice(services) -> dict:
    from gateway.steps.acknowledge import practice_context
    ctx = practice_context(services.cfg)
    ctx["portal_address"] = services.addresses.portal
    return ctx


def terms_version(env: jinja2.Environment, context: dict) -> str:
    """The version string the terms template sets: {% set terms_version = "..." %}."""
    return str(env.get_template("pages/terms.html").make_module(context).terms_version)


def _render(request: web.Request, name: str, status: int = 200, **ctx) -> web.Response:
    services, env = request.app[SERVICES], request.app[PAGES]
    context = {**_practice(services), **ctx}
    context.setdefault("terms_version", terms_version(env, context))
    html = env.get_template(f"pages/{name}.html").render(**context)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


def _csrf_value(request: web.Request) -> str:
    value = request.cookies.get(CSRF_COOKIE, "")
    return value if 20 <= len(value) <= 100 and value.isascii() else secrets.token_urlsafe(32)


def _with_csrf(request: web.Request, response: web.Response, value: str) -> web.Response:
    secure = request.app[SERVICES].cfg.http.public_url.startswith("https:")
    response.set_cookie(CSRF_COOKIE, value, path="/enroll", httponly=True, secure=secure,
                        samesite="Strict")
    return response


def _form_page(request, token: str, status: int = 200, errors=None, account: str = ""):
    csrf = _csrf_value(request)
    response = _render(request, "enroll", status, token=token, csrf=csrf,
                       errors=errors or {}, account=account, closed=None)
    return _with_csrf(request, response, csrf)


def _closed_page(request, state: str) -> web.Response:
    return _render(request, "enroll", STATUS_CLOSED.get(state, 410), token="", csrf="",
                   errors={}, account="", closed=enrollment.CLOSED[state])


async def get_enroll(request: web.Request) -> web.Response:
    token = request.query.get("token", "")
    now = request.app[CLOCK]()
    state = await asyncio.to_thread(enrollment.link_state, request.app[SERVICES], token, now)
    if state != "live":
        return _closed_page(request, state)
    return _form_page(request, token)


def _read_form(data) -> tuple[str, enrollment.Form]:
    def get(key: str) -> str:
        value = data.get(key, "")
        return value if isinstance(value, str) else ""
    form = enrollment.Form(account=get("account")[:100], password=get("password"),
                           confirm=get("confirm"), agree=get("agree") == "yes",
                           terms_version=get("terms_version"))
    return get("token"), form


async def post_enroll(request: web.Request) -> web.Response:
    data = await request.post()
    token, form = _read_form(data)
    cookie, field = request.cookies.get(CSRF_COOKIE, ""), data.get("csrf", "")
    if not (cookie and isinstance(field, str) and hmac.compare_digest(cookie.encode(),
                                                                      field.encode())):
        log.info("enrollment form refused: csrf check failed")
        return _form_page(request, token, 403, account=form.account, errors={
            "form": "This form could not be checked (it was open in another window, or "
                    "cookies are blocked). Please fill it in again and send it."})
    services, env = request.app[SERVICES], request.app[PAGES]
    version = terms_version(env, _practice(services))
    outcome = await asyncio.to_thread(enrollment.enroll, services, token, form, version,
                                      request.app[CLOCK]())
    if outcome.closed:
        return _closed_page(request, outcome.closed)
    if outcome.errors:
        return _form_page(request, token, 400, errors=outcome.errors, account=form.account)
    services.committed()
    response = _render(request, "enrolled", email=outcome.email)
    response.del_cookie(CSRF_COOKIE, path="/enroll")
    return response


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


@web.middleware
async def security_headers(request: web.Request, handler):
    try:
        response = await handler(request)
    except web.HTTPException as e:
        response = e
    except Exception:
        log.exception("http handler error", extra={"path": request.path})
        response = web.Response(text="Something went wrong. Please try again later or call "
                                "the office.", status=500)
    for key, value in SECURITY_HEADERS.items():
        response.headers.setdefault(key, value)
    return response


def make_app(services, clock=utcnow, listeners=None) -> web.Application:
    app = web.Application(middlewares=[security_headers], client_max_size=64 * 1024)
    app[SERVICES], app[PAGES], app[CLOCK] = services, page_env(services), clock
    if listeners is not None:
        app[LISTENERS] = listeners
    app.router.add_get("/enroll", get_enroll)
    app.router.add_post("/enroll", post_enroll)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_page)
    return app


async def start_http(services, host: str, port: int, clock=utcnow,
                     listeners=None) -> HttpRunner:
    """Serve make_app on host:port (0: any free port; see runner.port); stop with
    ``await runner.cleanup()``.  `listeners` () -> {name: serving?} feeds /healthz."""
    runner = HttpRunner(make_app(services, clock, listeners), access_log_class=AccessLogger)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("http listening", extra={"http": f"{host}:{runner.port}"})
    return runner
