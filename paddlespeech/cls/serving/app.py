"""The FastAPI application: endpoints, API key, upload limit, access log,
and what keeps other sites' pages and rebound DNS names out.

``create_app(service, ...)`` serves a :class:`.service.Service`; the
service starts (loads and warms its predictors in the background) with
the app and closes after the last request has been answered.
"""
import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import re
import threading
import time
from importlib import resources

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from . import stream
from .batcher import Unavailable
from .connections import Occasional, loop_error_handler
from .protocol import (BAD_REQUEST, FORBIDDEN, MISDIRECTED, TOO_LARGE,
                       UNAUTHORIZED, UPSTREAM_HELP, ClientError, file_error,
                       file_result, parse_top_k, parse_upstream_request,
                       server_timing, shorten, upstream_error,
                       upstream_result)
from .service import CLIENT_GONE, CLIENT_GONE_MESSAGE, UNAVAILABLE

log = logging.getLogger('paddlespeech.cls.serving')

UPSTREAM = '/paddlespeech/cls'
OPEN_PATHS = {'/healthz', '/', '/live-worklet.js'}  # liveness, the page
RETRY_AFTER_S = 2  # on every 503: about a restart of the inference process
LOOPBACK_HOSTS = ('localhost', '127.0.0.1', '::1')
SAFE_METHODS = (b'GET', b'HEAD', b'OPTIONS')
DISCONNECTED_MESSAGE = ('the client disconnected before sending the whole '
                        'request')


def default_allowed_hosts(bind_host):
    """The Host names answered by default: loopback names for a server
    bound to loopback (a page of another site whose DNS name is rebound
    to 127.0.0.1 sends its own name), any name otherwise (None)."""
    if bind_host in LOOPBACK_HOSTS or bind_host.startswith('127.'):
        return list(dict.fromkeys([*LOOPBACK_HOSTS, bind_host]))
    return None


def create_app(service, api_key=None, max_upload_mb=20.0, close_timeout=10.0,
               allowed_hosts=None, allowed_origins=(), stream_limits=None):
    """``api_key``: every endpoint but ``/healthz`` and the page itself
    (a browser cannot send a header when opening it; the page sends the
    key with its requests) needs ``Authorization: Bearer <key>``.
    ``close_timeout``: seconds (or a function giving them at shutdown)
    the predictors get to finish their queue and stop; then the clips
    still queued fail and the predictors are ended.
    ``allowed_hosts``: Host names answered (None or ``*``: any);
    ``allowed_origins``: other sites whose pages may call the service
    (``*``: any), which without an API key takes only its own page's
    requests from browsers. The WebSocket ``/v1/stream`` checks the key
    itself (header or first message); ``stream_limits``:
    :class:`.stream.StreamLimits`."""
    decoding = asyncio.Semaphore(service.max_decoding)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        asyncio.get_running_loop().set_exception_handler(
            loop_error_handler(Occasional()))
        service.start()
        try:
            yield
        finally:
            await run_in_threadpool(service.close, close_timeout()
                                    if callable(close_timeout)
                                    else close_timeout)

    app = FastAPI(title='PANNs sound classification', lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(ClientError)
    async def client_error(request, e):
        return _error(request, e.status, e.message)

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request, e):
        """Logged as one line; the answer goes nowhere."""
        request.state.error = DISCONNECTED_MESSAGE
        return Response(status_code=CLIENT_GONE)

    @app.get('/healthz')
    async def healthz():
        return {'status': 'alive'}

    @app.get('/readyz')
    async def readyz():
        if not service.ready:
            return JSONResponse({'status': service.state}, UNAVAILABLE,
                                {'Retry-After': str(RETRY_AFTER_S)})
        return {'status': 'ready'}

    @app.get('/', response_class=HTMLResponse)
    async def page():
        return resources.files(__package__).joinpath(
            'static/index.html').read_text()

    @app.get('/live-worklet.js')
    async def worklet():
        """The page's audio worklet (its Live mode): a module of its own,
        from the page's origin."""
        return Response(resources.files(__package__).joinpath(
            'static/live-worklet.js').read_text(),
            media_type='text/javascript')

    @app.get('/v1/model')
    async def model():
        _check_ready(service)
        return {**service.model_info(), 'streaming': stream.available(),
                'stream_path': stream.PATH}

    @app.websocket(stream.PATH)
    async def live(websocket: WebSocket):
        await stream.serve(websocket, service, api_key, stream_limits)

    @app.get('/v1/stats')
    async def stats():
        """Batches run by size (a debug counter) and requests in flight."""
        return service.stats()

    @app.get(UPSTREAM + '/help')
    async def upstream_help():
        return UPSTREAM_HELP

    @app.post(UPSTREAM)
    async def upstream(request: Request):
        data, topk = parse_upstream_request(await request.body())
        _check_ready(service)
        (result,) = await _classify(request, service, decoding,
                                    [('audio', data)])
        if isinstance(result, ClientError):
            raise result
        return upstream_result(result[0], service.labels, topk)

    @app.post('/v1/classify')
    async def classify(request: Request):
        files, top_k = await _read_form(request)
        _check_ready(service)
        results = await _classify(request, service, decoding, files)
        body = {'results': [
            file_error(name, r) if isinstance(r, ClientError) else
            file_result(name, r[0], service.labels, top_k, r[1])
            for (name, _), r in zip(files, results)]}
        errors = [r for r in results if isinstance(r, ClientError)]
        if len(errors) < len(results):
            return body
        request.state.error = errors[0].message
        return JSONResponse(body, errors[0].status)

    return Gate(app, api_key, int(max_upload_mb * 2**20), allowed_hosts,
                allowed_origins)


async def _classify(request, service, decoding, files):
    """The results; their timing goes to the access log and the
    ``Server-Timing`` header (:class:`Gate`). Headers are checked and
    the audio admitted first (413/422/503 before any decoding), then the
    request waits for one of ``decoding``'s slots; a client that
    disconnected meanwhile costs no more work."""
    service.requests_in_flight += 1
    gone = threading.Event()
    watch = asyncio.create_task(_watch_disconnect(request, gone))
    try:
        with await run_in_threadpool(service.admit, files) as admitted:
            async with decoding:
                if gone.is_set():
                    raise ClientError(CLIENT_GONE, CLIENT_GONE_MESSAGE)
                results, request.state.timing = await run_in_threadpool(
                    service.classify, admitted, gone.is_set)
        return results
    except Unavailable as e:
        raise ClientError(UNAVAILABLE, str(e))
    except asyncio.CancelledError:  # the server stops: no time left
        raise ClientError(UNAVAILABLE, 'the service is shutting down; '
                          'the request did not finish in time') from None
    finally:
        watch.cancel()
        service.requests_in_flight -= 1


async def _watch_disconnect(request, gone):
    """Sets ``gone`` when the client disconnects (the body is read: the
    next message the server has for the app is the disconnect)."""
    while True:
        message = await request.receive()
        if message['type'] == 'http.disconnect':
            gone.set()
            return


def _check_ready(service):
    if service.state == 'loading':
        raise ClientError(UNAVAILABLE, 'the model is still loading; retry '
                          'when GET /readyz answers 200')
    if not service.ready:
        raise ClientError(UNAVAILABLE, f'the service is {service.state}; '
                          f'retry when GET /readyz answers 200')


async def _read_form(request):
    """``([(name, bytes)], top_k)`` of a multipart upload: files in the
    field ``files`` (or ``file``), ``top_k`` as a field or in the query."""
    if not request.headers.get('content-type', '').startswith(
            'multipart/form-data'):
        raise ClientError(BAD_REQUEST, 'send the audio files as '
                          'multipart/form-data in the field "files"')
    try:
        form = await request.form()
    except (ClientError, ClientDisconnect):
        raise
    except Exception as e:
        reason = (str(e).splitlines() or [type(e).__name__])[0][:120]
        raise ClientError(BAD_REQUEST, f'malformed multipart body ({reason})')
    uploads = [f for f in form.getlist('files') + form.getlist('file')
               if not isinstance(f, str)]
    if not uploads:
        raise ClientError(BAD_REQUEST, 'no files: send the audio files as '
                          'multipart/form-data in the field "files"')
    top_k = parse_top_k(form.get('top_k', request.query_params.get(
        'top_k', 1)))
    files = [(u.filename or f'file{i + 1}', await u.read())
             for i, u in enumerate(uploads)]
    await form.close()
    return files, top_k


def _error(request, status, message):
    request.state.error = message
    headers = ({'Retry-After': str(RETRY_AFTER_S)}
               if status == UNAVAILABLE else None)
    if request.url.path == UPSTREAM:
        return JSONResponse(upstream_error(status, message), status, headers)
    return JSONResponse({'error': message}, status, headers)


class Gate:
    """Around every request: the access log line (with latency, where the
    time went, and the error, if any), the ``Server-Timing`` header, the
    security headers, the Host and Origin checks, the API key, and the
    upload limit (413 before reading a body whose declared length is over
    it, and while reading one that did not declare it)."""

    def __init__(self, app, api_key, max_bytes, allowed_hosts=None,
                 allowed_origins=()):
        self.app, self.api_key, self.max_bytes = app, api_key, max_bytes
        self.hosts = None if allowed_hosts is None or '*' in allowed_hosts \
            else {_host_name(h) for h in allowed_hosts}
        self.origins = {o.rstrip('/').lower() for o in allowed_origins}
        self.headers = security_headers()

    async def __call__(self, scope, receive, send):
        if scope['type'] != 'http':
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [0]
        state = scope.setdefault('state', {})  # the app's request.state
        headers = dict(scope['headers'])
        cors = self._cors(headers)

        async def send_status(message):
            if message['type'] == 'http.response.start':
                status[0] = message['status']
                added = [*self.headers, *cors]
                if 'timing' in state:
                    added.append((b'server-timing', server_timing(
                        state['timing'], time.perf_counter() - start)))
                message['headers'] = list(message.get('headers', [])) + added
            await send(message)

        try:
            if cors and scope['method'] == 'OPTIONS':  # a CORS preflight
                await Response(status_code=204, headers={
                    'access-control-allow-methods': 'GET, POST',
                    'access-control-allow-headers':
                        'authorization, content-type',
                    'access-control-max-age': '600'})(
                    scope, receive, send_status)
                return
            refused = self._refuse(scope, headers)
            if refused:
                state['error'] = refused[1]
                await _send_json(send_status, scope, *refused)
            else:
                await self.app(scope, self._limited(receive), send_status)
        finally:
            error, timing = state.get('error'), state.get('timing')
            client = scope.get('client') or ('-', 0)
            log.info('%s "%s %s" %d %.1f ms%s%s', client[0], scope['method'],
                     scope['path'], status[0],
                     1000 * (time.perf_counter() - start),
                     f' ({_timing_text(timing)})' if timing else '',
                     f' error: {error}' if error else '')

    def _refuse(self, scope, headers):
        """``(status, message)`` of a request refused before reading it."""
        host = headers.get(b'host', b'').decode('latin-1')
        if self.hosts is not None and host and \
                _host_name(host) not in self.hosts:
            return MISDIRECTED, (f'Host {shorten(host)} is not served here '
                                 f'(--allowed_hosts)')
        if not self.api_key and scope['method'].encode() not in SAFE_METHODS:
            origin = self._foreign_origin(headers, host)
            if origin:
                return FORBIDDEN, (
                    f'a page of {origin} may not call this service (without '
                    f'an API key only its own page may; --allowed_origins)')
        if self.api_key and scope['path'] not in OPEN_PATHS:
            given = headers.get(b'authorization', b'').decode('latin-1')
            scheme, _, token = given.strip().partition(' ')
            # RFC 6750: the scheme is case-insensitive; compare_digest
            # keeps the token's comparison constant-time
            if not (hmac.compare_digest(token.strip().encode(),
                                        self.api_key.encode()) and
                    scheme.lower() == 'bearer'):
                return UNAUTHORIZED, ('missing or wrong API key: send '
                                      '"Authorization: Bearer <key>"')
        length = headers.get(b'content-length', b'0')
        if not length.isdigit():
            return BAD_REQUEST, 'bad Content-Length header'
        if len(length) > 15 or int(length) > self.max_bytes:
            return TOO_LARGE, self._too_large()
        return None

    def _foreign_origin(self, headers, host):
        """The origin of a browser request from another site's page, or
        None (same origin, an allowed one, or not a browser: no Origin
        and no ``Sec-Fetch-Site``)."""
        origin = headers.get(b'origin', b'').decode('latin-1').strip()
        if origin:
            if self._allowed(origin) or (
                    origin.partition('://')[2].lower() == host.lower()):
                return None
            return shorten(origin)
        site = headers.get(b'sec-fetch-site', b'').decode('latin-1')
        if site.lower() in ('cross-site', 'same-site'):
            return f'another site ({site})'
        return None

    def _allowed(self, origin):
        return '*' in self.origins or origin.rstrip('/').lower() in \
            self.origins

    def _cors(self, headers):
        """CORS headers for a request from an allowed origin."""
        origin = headers.get(b'origin', b'').decode('latin-1').strip()
        if not (origin and self._allowed(origin)):
            return []
        return [(b'access-control-allow-origin', origin.encode('latin-1')),
                (b'vary', b'Origin')]

    def _too_large(self):
        return (f'request body over {self.max_bytes / 2**20:g} MB '
                f'(--max_upload_mb)')

    def _limited(self, receive):
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            received += len(message.get('body', b''))
            if received > self.max_bytes:
                raise ClientError(TOO_LARGE, self._too_large())
            return message

        return limited


def _host_name(host):
    """``example.org:8090`` -> ``example.org``, ``[::1]:8090`` -> ``::1``."""
    host = host.strip().lower()
    if host.startswith('['):
        return host[1:].partition(']')[0]
    return host.partition(':')[0] if host.count(':') == 1 else host


def security_headers():
    """On every answer: no MIME sniffing, no framing, and a
    Content-Security-Policy that lets the page run only its own inline
    script and style (by their hashes) and its own AudioWorklet module,
    and talk only to this service (its WebSocket too)."""
    page = resources.files(__package__).joinpath(
        'static/index.html').read_text()

    def hashes(tag):
        return ' '.join(
            "'sha256-%s'" % base64.b64encode(hashlib.sha256(
                block.encode()).digest()).decode()
            for block in re.findall(f'<{tag}>(.*?)</{tag}>', page, re.S))

    # 'self' in script-src: the Live mode's AudioWorklet module
    csp = (f"default-src 'none'; script-src 'self' {hashes('script')}; "
           f"style-src {hashes('style')}; connect-src 'self'; "
           f"img-src 'self'; base-uri 'none'; form-action 'none'; "
           f"frame-ancestors 'none'")
    return [(b'x-content-type-options', b'nosniff'),
            (b'x-frame-options', b'DENY'),
            (b'referrer-policy', b'no-referrer'),
            (b'content-security-policy', csp.encode())]


def _timing_text(timing):
    return ', '.join(f'{k} {1000 * v:.1f}' for k, v in timing.items())


async def _send_json(send, scope, status, message):
    body = (upstream_error(status, message) if scope['path'] == UPSTREAM
            else {'error': message})
    response = JSONResponse(body, status)
    if status == UNAUTHORIZED:
        response.headers['WWW-Authenticate'] = 'Bearer'
    await response(scope, None, send)
