"""Sockets: idle and slow connections closed, a cap on open connections
below the open-file limit, event-loop errors logged once per interval.

uvicorn's h11 protocol closes a keep-alive connection left idle after an
answer, but waits forever for a request's headers or body: 500 sockets
dripping bytes hold 500 files until the process runs out and every
accept fails. :class:`GuardedH11Protocol` closes a connection that has
not sent its request line and headers ``header_timeout`` seconds after it
opened (or after the first byte of its next request), or its body
``body_timeout`` seconds after the headers, and refuses a connection
beyond ``max_connections`` at once (503) instead of holding its socket.
"""
import logging
import math
import resource
import time

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..errors import UserError

log = logging.getLogger('paddlespeech.cls.serving')

DEFAULT_MAX_CONNECTIONS = 1000
# Open files the server needs besides its connections: the listening
# socket, the event loop's, the pipes to the inference processes, logs.
RESERVED_FILES = 64


class Occasional:
    """A warning logged at most once per ``interval`` seconds and kind,
    with how often it happened since the last line: a flood of the same
    failure (a full file table fails every accept) stays a few lines."""

    def __init__(self, interval=10.0):
        self.interval, self.last, self.counts = interval, {}, {}

    def __call__(self, kind, message):
        now = time.monotonic()
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if now - self.last.get(kind, -math.inf) < self.interval:
            return
        n, self.last[kind] = self.counts.pop(kind), now
        log.warning('%s%s', message, f' ({n} times in the last '
                    f'{self.interval:g} s)' if n > 1 else '')


def loop_error_handler(occasional):
    """For ``loop.set_exception_handler``: asyncio's errors (``socket.accept()
    out of system resource``, a protocol's failure) as one line each,
    at most once per interval, instead of a traceback per attempt."""

    def handle(loop, context):
        message = context.get('message', 'event loop error')
        error = context.get('exception')
        occasional(message, f'{message}: {error!r}' if error else message)

    return handle


def _raw_response(status, reason, message, extra=b''):
    body = ('{"error": "%s"}' % message).encode()
    return (b'HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n'
            b'connection: close\r\n%scontent-length: %d\r\n\r\n'
            % (status, reason, extra, len(body)) + body)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with header and body timeouts and a
    connection cap; :func:`guarded_protocol` sets the numbers."""

    header_timeout = 10.0
    body_timeout = 60.0
    max_connections = None
    occasional = Occasional()

    def connection_made(self, transport):
        super().connection_made(transport)
        self._phase, self._timer, self._got_bytes = None, None, False
        self._upgraded = False
        if self.max_connections is not None and \
                len(self.connections) > self.max_connections:
            self.occasional('connections', f'refused connections over '
                            f'--max_connections {self.max_connections}')
            transport.write(_raw_response(
                503, b'Service Unavailable', 'too many open connections; '
                'retry shortly', b'retry-after: 1\r\n'))
            transport.close()
            return
        self._enter('headers')

    def connection_lost(self, exc):
        self._enter(None)
        super().connection_lost(exc)

    def data_received(self, data):
        self._got_bytes = True
        super().data_received(data)
        if self._upgraded:
            return
        state = self.conn.their_state
        if state is h11.IDLE:
            if self._phase == 'idle':
                self._enter('headers')
        elif state is h11.SEND_BODY:
            self._enter('body')
        else:
            self._enter(None)

    def handle_websocket_upgrade(self, event):
        """The connection becomes a WebSocket, with a protocol of its own:
        a live stream lasts as long as its audio, so no header or body
        timeout applies to it any more."""
        self._upgraded = True
        self._enter(None)
        super().handle_websocket_upgrade(event)

    def on_response_complete(self):
        super().on_response_complete()
        if self.transport.is_closing():
            return
        state = self.conn.their_state
        # idle: uvicorn's keep-alive timeout runs until the next byte
        self._enter('idle' if state is h11.IDLE else
                    'body' if state is h11.SEND_BODY else None)

    def _enter(self, phase):
        if phase == self._phase:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._phase = phase
        timeout = {'headers': self.header_timeout,
                   'body': self.body_timeout}.get(phase)
        if timeout is not None:
            self._timer = self.loop.call_later(timeout, self._expire, phase,
                                               timeout)

    def _expire(self, phase, timeout):
        self._timer = None
        if self.transport.is_closing():
            return
        flag = '--header_timeout' if phase == 'headers' else '--body_timeout'
        self.occasional(phase, f'closed connections whose request {phase} '
                        f'took over {timeout:g} s ({flag})')
        if phase == 'headers' and self._got_bytes and \
                self.conn.our_state is h11.IDLE:
            self.transport.write(_raw_response(
                408, b'Request Timeout', f'request headers not complete '
                f'within {timeout:g} s'))
        # a body cut off: the app reads a disconnect (a 499 log line)
        self.transport.close()


def guarded_protocol(header_timeout, body_timeout, max_connections,
                     occasional=None):
    """The protocol class to give uvicorn (``Config(http=...)``)."""
    return type('GuardedH11Protocol', (GuardedH11Protocol,), {
        'header_timeout': header_timeout, 'body_timeout': body_timeout,
        'max_connections': max_connections,
        'occasional': occasional or Occasional()})


def reserve_files(max_connections=None):
    """The connection cap: ``max_connections``, or by default
    :data:`DEFAULT_MAX_CONNECTIONS` (fewer when the open-file limit is
    lower), with :data:`RESERVED_FILES` to spare under the limit. Raises
    the soft open-file limit toward the hard one as far as needed; a
    ``max_connections`` that still does not fit is a UserError."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = (max_connections or DEFAULT_MAX_CONNECTIONS) + RESERVED_FILES
    infinite = resource.RLIM_INFINITY
    if soft != infinite and soft < want:
        new = want if hard == infinite else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
        except (ValueError, OSError):
            pass
    fits = math.inf if soft == infinite else soft - RESERVED_FILES
    if max_connections is None:
        return max(1, min(DEFAULT_MAX_CONNECTIONS, fits))
    if max_connections > fits:
        raise UserError(
            f'--max_connections {max_connections} needs '
            f'{max_connections + RESERVED_FILES} open files; the limit is '
            f'{soft} (raise it with ulimit -n, or lower --max_connections)')
    return max_connections
