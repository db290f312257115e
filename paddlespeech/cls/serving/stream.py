"""``/v1/stream``: live detection over a WebSocket.

The client's first message is JSON: ``sample_rate``, ``format``
(``s16le`` or ``f32le``), optional ``channels`` (1), ``window_seconds``
and ``hop_seconds`` (``detect.py``'s defaults), ``threshold`` (the
model's calibrated ones, else 0.5), ``threshold_off``,
``min_event_seconds``, ``merge_gap_seconds``,
``classes``, ``top_k`` (5; 0: every class in the model's order) and
``api_key`` (for browsers, which cannot send an ``Authorization``
header). The server answers ``{"type": "start", ...}`` (the windowing and
labels), then per window ``{"type": "scores", "start", "end", "labels",
"scores"}`` and per event opened and closed ``{"type": "event", "state":
"open"|"close", "label", "onset", "offset", "score"}`` (offset null while
open). Binary messages carry the audio, any number of whole frames;
the text message ``{"type": "end"}`` scores the rest, closes the open
events and ends the stream (close code 1000). Bad input gets
``{"type": "error", "message"}`` and a close code.

Each chunk is scored (through the service's micro-batcher, with the
file requests) before the next is read, so a client sending faster than
real time is held back by TCP flow control; the bytes waiting for a
stream are bounded by the server's WebSocket queue (``WS_MAX_SIZE`` x
``WS_MAX_QUEUE``).
"""
import asyncio
import hmac
import importlib.util
import json
import logging
import math
import time
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect

from ..errors import UserError
from ..events import detection_windowing
from ..live import PCM_FORMATS, LiveDetector, decode_pcm
from .batcher import Unavailable
from .protocol import top

log = logging.getLogger('paddlespeech.cls.serving')

PATH = '/v1/stream'
# close codes (RFC 6455 7.4.1)
NORMAL, GOING_AWAY, UNSUPPORTED, INVALID, POLICY, TOO_BIG, INTERNAL, \
    TRY_LATER = 1000, 1001, 1003, 1007, 1008, 1009, 1011, 1013
SAMPLE_RATES = (8000, 192000)  # accepted input rates, inclusive
MAX_CHANNELS = 8
MAX_WINDOW_SECONDS = 60.0
# the server's own WebSocket limits (uvicorn): a message over WS_MAX_SIZE
# is refused by the protocol layer (1009), at most WS_MAX_QUEUE wait
WS_MAX_SIZE, WS_MAX_QUEUE = 4 << 20, 4
OPTIONS = {'sample_rate', 'channels', 'format', 'window_seconds',
           'hop_seconds', 'threshold', 'threshold_off', 'min_event_seconds',
           'merge_gap_seconds', 'classes', 'top_k', 'api_key', 'type'}


@dataclass
class StreamLimits:
    """``first_seconds``: wait for the first message; ``idle_seconds``:
    a stream without a message this long is ended (its events closed);
    ``max_message_bytes``: larger audio messages are refused."""
    first_seconds: float = 10.0
    idle_seconds: float = 30.0
    max_message_bytes: int = 1 << 20


class StreamError(Exception):
    def __init__(self, message, code=INVALID):
        super().__init__(message)
        self.message, self.code = message, code


def available():
    """Whether uvicorn can speak WebSocket here (``websockets`` or
    ``wsproto`` installed)."""
    return any(importlib.util.find_spec(m) for m in ('websockets',
                                                     'wsproto'))


def parse_start(text, service, api_key, header):
    """The first message's settings, checked; raises :class:`StreamError`."""
    if text is None:
        raise StreamError('the first message must be JSON text: {"sample_'
                          'rate": 32000, "format": "s16le"}', UNSUPPORTED)
    try:
        start = json.loads(text)
    except ValueError as e:
        raise StreamError(f'the first message is not JSON ({e})')
    if not isinstance(start, dict):
        raise StreamError('the first message must be a JSON object')
    if api_key and not any(
            hmac.compare_digest(given.encode(), want.encode()) for given, want
            in ((header or '', f'Bearer {api_key}'),
                (str(start.get('api_key') or ''), api_key))):
        raise StreamError('missing or wrong API key: send "Authorization: '
                          'Bearer <key>" or "api_key" in the first message',
                          POLICY)
    unknown = sorted(set(start) - OPTIONS)
    if unknown:
        raise StreamError(f'unknown keys {unknown}; known: {sorted(OPTIONS)}')
    fmt = start.get('format')
    if fmt not in PCM_FORMATS:
        raise StreamError(f'"format" must be one of {sorted(PCM_FORMATS)}, '
                          f'got {fmt!r}')
    rate = _number(start, 'sample_rate', int, *SAMPLE_RATES, required=True)
    channels = _number(start, 'channels', int, 1, MAX_CHANNELS, 1)
    window = _number(start, 'window_seconds', float, 0, MAX_WINDOW_SECONDS,
                     service.window_seconds, low_open=True)
    hop = _number(start, 'hop_seconds', float, 0, MAX_WINDOW_SECONDS,
                  low_open=True)
    # None: the model's calibrated thresholds, else 0.5 (class_thresholds)
    threshold = _number(start, 'threshold', float, 0, 1, low_open=True)
    off = _number(start, 'threshold_off', float, 0,
                  1 if threshold is None else threshold)
    min_event = _number(start, 'min_event_seconds', float, 0, math.inf, 0.0)
    gap = _number(start, 'merge_gap_seconds', float, 0, math.inf, 0.0)
    top_k = _number(start, 'top_k', int, 0, math.inf, 5)
    labels = list(service.labels)
    classes = start.get('classes')
    if classes is not None:
        if not (isinstance(classes, list) and classes and all(
                isinstance(c, str) for c in classes)):
            raise StreamError('"classes" must be a list of label names')
        wrong = [c for c in classes if c not in labels]
        if wrong:
            raise StreamError(f'unknown classes {wrong}; the model has '
                              f'{len(labels)}, e.g. {labels[:5]}')
        classes = list(dict.fromkeys(classes))
    try:
        windowing = detection_windowing(service.meta.clip_seconds,
                                        window, hop)
    except UserError as e:
        raise StreamError(str(e)) from None
    return dict(fmt=fmt, rate=rate, channels=channels, windowing=windowing,
                threshold=threshold, off=off, min_event=min_event, gap=gap,
                top_k=top_k, classes=classes)


def _number(start, key, kind, low, high, default=None, required=False,
            low_open=False):
    value = start.get(key)
    if value is None:
        if required:
            raise StreamError(f'"{key}" is missing from the first message')
        return default
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) \
        and (kind is float or float(value).is_integer())
    if not ok or not (low < value if low_open else low <= value) or \
            not value <= high:
        what = 'an integer' if kind is int else 'a number'
        raise StreamError(f'"{key}" must be {what} in '
                          f'{"(" if low_open else "["}{low:g}, {high:g}], '
                          f'got {value!r}')
    return kind(value)


async def serve(ws, service, api_key=None, limits=None):
    """One stream, from accepting the socket to its access-log line."""
    limits = limits or StreamLimits()
    started, state = time.perf_counter(), {'code': NORMAL, 'error': None}
    detector = None
    await ws.accept()
    try:
        first = await _receive(ws, limits.first_seconds, 'first message')
        if first is None:
            return
        if not service.ready:
            raise StreamError('the model is still loading; retry when GET '
                              '/readyz answers 200', TRY_LATER)
        s = parse_start(first.get('text'), service, api_key,
                        ws.headers.get('authorization'))
        detector = _detector(service, s)
        s['labels'] = detector.labels
        await ws.send_text(json.dumps({
            'type': 'start', 'sample_rate': detector.sample_rate,
            'window_seconds': detector.size / detector.sample_rate,
            'hop_seconds': detector.hop / detector.sample_rate,
            'labels': detector.labels}))
        while True:
            try:
                message = await _receive(ws, limits.idle_seconds, 'audio')
            except StreamError:
                await _send_steps(ws, s, *await run_in_threadpool(
                    detector.end))
                raise
            if message is None:  # gone: its open events end with it
                state['code'] = GOING_AWAY
                return
            data = message.get('bytes')
            if data is None:
                if _is_end(message.get('text')):
                    await _send_steps(ws, s, *await run_in_threadpool(
                        detector.end))
                    await ws.close(NORMAL)
                    return
                raise StreamError('after the first message send audio as '
                                  'binary messages, or {"type": "end"}',
                                  UNSUPPORTED)
            if len(data) > limits.max_message_bytes:
                raise StreamError(f'a message of {len(data)} bytes; at most '
                                  f'{limits.max_message_bytes} per message',
                                  TOO_BIG)
            await _send_steps(ws, s, await run_in_threadpool(
                _push, detector, data, s))
    except WebSocketDisconnect:  # gone while we answered
        state['code'] = GOING_AWAY
    except StreamError as e:
        state.update(code=e.code, error=e.message)
        await _refuse(ws, e)
    except Unavailable as e:
        state.update(code=GOING_AWAY, error=str(e))
        await _refuse(ws, StreamError(str(e), GOING_AWAY))
    except Exception as e:  # the model failed: this stream only
        state.update(code=INTERNAL, error=f'{type(e).__name__}: {e}')
        await _refuse(ws, StreamError(state['error'], INTERNAL))
    finally:
        client = ws.client or ('-', 0)
        seconds = detector.duration if detector else 0.0
        windows = detector.tracker.windows if detector else 0
        log.info('%s "WS %s" %d %.1f ms (%.1f s audio, %d windows)%s',
                 client[0], PATH, state['code'],
                 1000 * (time.perf_counter() - started), seconds, windows,
                 f' error: {state["error"]}' if state['error'] else '')


def _detector(service, s):
    meta = service.meta
    return LiveDetector(
        service.batcher.score, service.labels, meta.feature.sample_rate,
        s['windowing'], s['rate'], s['threshold'], s['off'], s['min_event'],
        s['gap'], 0, s['classes'], meta.thresholds,
        batch_size=service.batcher.max_batch_size)


async def _receive(ws, timeout, what):
    """The next message, None when the client has gone; raises
    :class:`StreamError` after ``timeout`` seconds without one."""
    try:
        message = await asyncio.wait_for(ws.receive(), timeout)
    except asyncio.TimeoutError:
        raise StreamError(f'no {what} for {timeout:g} s; closing',
                          POLICY) from None
    if message['type'] == 'websocket.disconnect':
        return None
    return message


def _is_end(text):
    try:
        return json.loads(text) == {'type': 'end'}
    except (TypeError, ValueError):
        return False


def _push(detector, data, s):
    try:
        chunk = decode_pcm(data, s['fmt'], s['channels'])
    except ValueError as e:
        raise StreamError(str(e)) from None
    return detector.push(chunk)


async def _send_steps(ws, s, steps, closing=()):
    for step in steps:
        if s['top_k']:
            best = top(step.scores, s['labels'], s['top_k'])
        else:
            best = list(zip(s['labels'], step.scores))
        await ws.send_text(json.dumps({
            'type': 'scores', 'start': step.start, 'end': step.end,
            'labels': [label for label, _ in best],
            'scores': [float(v) for _, v in best]}))
        await _send_events(ws, step.events)
    await _send_events(ws, closing)


async def _send_events(ws, events):
    for state, e in events:
        await ws.send_text(json.dumps({
            'type': 'event', 'state': state, 'label': e.label,
            'onset': e.onset, 'offset': e.offset, 'score': e.score}))


async def _refuse(ws, error):
    """The error message, then the close code (if the client is still
    there to hear them)."""
    try:
        await ws.send_text(json.dumps({'type': 'error',
                                       'message': error.message}))
        await ws.close(error.code)
    except Exception:
        pass
