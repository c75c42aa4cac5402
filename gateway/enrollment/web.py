"""The public HTTP listener: the enrollment page and nothing else; /healthz and
/metrics listen apart (gateway.ops_http, ``[http] ops_host``/``ops_port``).

``GET /enroll?token=T`` shows the form (or why the link cannot be used); ``POST /enroll``
checks everything (gateway.enrollment.enroll) and shows what happens next.  Pages are
Jinja2 templates under ``templates/pages/`` (autoescaped), plain HTML without JavaScript.

CSRF: a signed double-submit token: a random nonce with an HMAC over it and the
enrollment link (key derived from the encryption keys), in a ``SameSite=Strict; HttpOnly``
cookie and in a hidden field; a POST whose two values differ, or whose value we did not
sign for that link, is refused (so a value planted from elsewhere is worthless).  Posts are
limited per client address (gateway.enrollment.ratelimit): more get ``429``.

No token or password is ever logged: the access log records the path without the query,
the form moves the token out of the URL, and responses say ``Referrer-Policy: no-referrer``
so the link does not leak to other sites.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
import urllib.parse

import jinja2
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from gateway import crypto
from gateway.clock import utcnow
from gateway.enrollment import enroll as enrollment
from gateway.enrollment.ratelimit import RateLimiter, client_address
from gateway.enrollment import wording
from gateway.language import SUPPORTED, normalize_code
from gateway.notices import localize

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
LIMITER = web.AppKey("limiter", RateLimiter)  # posts per client address


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
    ctx["office_phone_tel"] = re.sub(r"[^\d+]", "", str(ctx["office_phone"] or ""))
    return ctx


# The page's language: ?lang= (the invite link's, or the switch's), else English.
SWITCH = {"en": ("es", "Español", "Idioma"), "es": ("en", "English", "Language")}


def page_lang(value) -> str:
    code = normalize_code(value if isinstance(value, str) else None)
    return code if code in SUPPORTED else "en"


def _switch(lang: str, token: str) -> dict:
    other, name, label = SWITCH[lang]
    query = urllib.parse.urlencode({"token": token, "lang": other} if token else
                                   {"lang": other})
    return {"switch_url": f"/enroll?{query}", "switch_lang": other, "switch_name": name,
            "switch_label": label}


def page_template(env: jinja2.Environment, name: str, lang: str) -> jinja2.Template:
    """pages/<lang>/NAME.html, or the English pages/NAME.html when LANG has none."""
    if lang != "en":
        try:
            return env.get_template(f"pages/{lang}/{name}.html")
        except jinja2.TemplateNotFound:
            pass
    return env.get_template(f"pages/{name}.html")


def terms_version(env: jinja2.Environment, context: dict, lang: str = "en") -> str:
    """The version string the terms template sets: {% set terms_version = "..." %}."""
    return str(page_template(env, "terms", lang).make_module(context).terms_version)


def _render(request: web.Request, name: str, status: int = 200, lang: str = "en",
            **ctx) -> web.Response:
    services, env = request.app[SERVICES], request.app[PAGES]
    context = localize({**_practice(services), "lang": lang, "text": wording.page_text(lang),
                        **ctx}, lang, services.cfg.practice.timezone)
    context.setdefault("terms_version", terms_version(env, context))
    html = page_template(env, name, lang).render(**context)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


def _csrf_sign(token: str, nonce: str) -> str:
    key = crypto.ring().mac_key("enroll-csrf")
    link = hashlib.sha256(token.encode()).hexdigest()
    return f"{nonce}.{hmac.new(key, f'{nonce}|{link}'.encode(), hashlib.sha256).hexdigest()}"


def csrf_ok(value: str, token: str) -> bool:
    """Is `value` a CSRF value we signed for this enrollment link?"""
    nonce = value.partition(".")[0]
    if not (16 <= len(nonce) <= 64 and len(value) <= 200 and value.isascii()):
        return False
    return hmac.compare_digest(_csrf_sign(token, nonce).encode(), value.encode())


def _csrf_value(request: web.Request, token: str) -> str:
    value = request.cookies.get(CSRF_COOKIE, "")
    return value if csrf_ok(value, token) else _csrf_sign(token, secrets.token_urlsafe(24))


def _with_csrf(request: web.Request, response: web.Response, value: str) -> web.Response:
    secure = request.app[SERVICES].cfg.http.public_url.startswith("https:")
    response.set_cookie(CSRF_COOKIE, value, path="/enroll", httponly=True, secure=secure,
                        samesite="Strict")
    return response


async def _form_page(request, token: str, status: int = 200, errors=None, account: str = "",
                     lang: str = "en"):
    csrf = _csrf_value(request, token)
    proxy = await asyncio.to_thread(enrollment.link_is_proxy, request.app[SERVICES], token)
    response = _render(request, "enroll", status, lang, token=token, csrf=csrf,
                       errors=wording.errors(lang, errors or {}), account=account,
                       closed=None, proxy=proxy, **_switch(lang, token))
    return _with_csrf(request, response, csrf)


def _closed_page(request, state: str, lang: str = "en", token: str = "") -> web.Response:
    return _render(request, "enroll", STATUS_CLOSED.get(state, 410), lang, token="",
                   csrf="", errors={}, account="", closed=wording.closed(lang, state),
                   proxy=False,
                   **_switch(lang, token))


async def get_enroll(request: web.Request) -> web.Response:
    token = request.query.get("token", "")
    lang = page_lang(request.query.get("lang"))
    now = request.app[CLOCK]()
    state = await asyncio.to_thread(enrollment.link_state, request.app[SERVICES], token, now)
    if state != "live":
        return _closed_page(request, state, lang, token[:200])
    return await _form_page(request, token, lang=lang)


def _read_form(data) -> tuple[str, enrollment.Form]:
    def get(key: str) -> str:
        value = data.get(key, "")
        return value if isinstance(value, str) else ""
    form = enrollment.Form(account=get("account")[:100], password=get("password"),
                           confirm=get("confirm"), agree=get("agree") == "yes",
                           terms_version=get("terms_version"))
    return get("token"), form


async def post_enroll(request: web.Request) -> web.Response:
    wait = request.app[LIMITER].allow(client_address(request))
    if wait:
        log.info("enrollment form refused: rate limit")
        return web.Response(text="Too many tries from your network. Please wait "
                            f"{int(wait // 60) + 1} minutes and try again, or call the office.",
                            status=429, headers={"Retry-After": str(int(wait) + 1)})
    data = await request.post()
    token, form = _read_form(data)
    lang = page_lang(data.get("lang"))
    cookie, field = request.cookies.get(CSRF_COOKIE, ""), data.get("csrf", "")
    if not (cookie and isinstance(field, str) and hmac.compare_digest(cookie.encode(),
                                                                      field.encode())
            and csrf_ok(cookie, token)):
        log.info("enrollment form refused: csrf check failed")
        return await _form_page(request, token, 403, account=form.account, lang=lang, errors={
            "form": "This form could not be checked (it was open in another window, or "
                    "cookies are blocked). Please fill it in again and send it."})
    services, env = request.app[SERVICES], request.app[PAGES]
    version = terms_version(env, _practice(services))
    outcome = await asyncio.to_thread(enrollment.enroll, services, token, form, version,
                                      request.app[CLOCK]())
    if outcome.closed:
        return _closed_page(request, outcome.closed, lang)
    if outcome.errors:
        return await _form_page(request, token, 400, errors=outcome.errors, account=form.account,
                          lang=lang)
    services.committed()
    response = _render(request, "enrolled", lang=lang, email=outcome.email)
    response.del_cookie(CSRF_COOKIE, path="/enroll")
    return response


@web.middleware
async def security_headers(request: web.Request, handler):
    try:
        response = await handler(request)
    except web.HTTPException as e:  # 404, 405...: raised on, with the same headers
        for key, value in SECURITY_HEADERS.items():
            e.headers.setdefault(key, value)
        raise
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
    app[LIMITER] = RateLimiter()
    if listeners is not None:
        app[LISTENERS] = listeners
    app.router.add_get("/enroll", get_enroll)
    app.router.add_post("/enroll", post_enroll)
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
