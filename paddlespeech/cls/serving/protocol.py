"""What goes over the wire: request validation and the response bodies,
PaddleSpeech's (``/paddlespeech/cls``) and this service's (``/v1/...``).

Every client mistake becomes a :class:`ClientError`: an HTTP status
(4xx) and one line naming the problem.
"""
import base64
import binascii
import json
import re

import numpy as np

BAD_REQUEST, UNAUTHORIZED, FORBIDDEN, TOO_LARGE, UNUSABLE = (
    400, 401, 403, 413, 422)
MISDIRECTED = 421  # a Host header this service does not answer to


class ClientError(Exception):
    """A request the service refuses: ``status`` and a one-line message."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status, self.message = status, message


def parse_top_k(value, name='top_k'):
    """A positive integer from JSON or a form field (text); ASCII digits
    only, at most nine of them (``int()`` refuses more than 4,300)."""
    if isinstance(value, str) and re.fullmatch(r'\s*\+?[0-9]{1,9}\s*',
                                               value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not (
            1 <= value < 10**9):
        raise ClientError(BAD_REQUEST, f'{name} must be a positive integer '
                          f'below 10**9, got {shorten(value)}')
    return value


def shorten(value, limit=40):
    """``repr(value)`` cut to ``limit`` characters, for one-line errors."""
    if isinstance(value, int) and not isinstance(value, bool) and \
            abs(value) >= 10**limit:
        return f'a number of more than {limit} digits'
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + '...'


def parse_upstream_request(body):
    """``(audio bytes, topk)`` of PaddleSpeech's ``{"audio": "<base64
    wav>", "topk": 1}`` (what ``paddlespeech_client cls`` sends)."""
    if not body:
        raise ClientError(BAD_REQUEST, 'empty request body: send JSON '
                          '{"audio": "<base64 audio file>", "topk": 1}')
    try:
        request = json.loads(body)
    except RecursionError:
        raise ClientError(BAD_REQUEST, 'request body is not JSON this '
                          'service reads (nested too deeply)')
    except (ValueError, UnicodeDecodeError) as e:
        raise ClientError(BAD_REQUEST, f'request body is not JSON ({e})')
    if not isinstance(request, dict):
        raise ClientError(BAD_REQUEST, 'request body must be a JSON object '
                          '{"audio": "<base64 audio file>", "topk": 1}')
    audio = request.get('audio')
    if not isinstance(audio, str):
        raise ClientError(BAD_REQUEST, '"audio" must be a string: the audio '
                          'file, base64-encoded')
    try:
        data = base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ClientError(BAD_REQUEST, f'"audio" is not valid base64 ({e})')
    if not data:
        raise ClientError(BAD_REQUEST, '"audio" is empty')
    return data, parse_top_k(request.get('topk', 1), 'topk')


def top(scores, labels, k):
    """``[(label, score)]`` of the ``k`` best classes, best first (ties:
    the lower index first, as ``deploy/predict.py`` prints them)."""
    order = np.argsort(-scores, kind='stable')[:k]
    return [(labels[i], float(scores[i])) for i in order]


def upstream_result(scores, labels, topk):
    return {'success': True, 'code': 200,
            'message': {'description': 'success'},
            'result': {'topk': topk, 'results': [
                {'class_name': name, 'prob': p}
                for name, p in top(scores, labels, topk)]}}


def upstream_error(status, message):
    """PaddleSpeech's error body (``failed_response``), sent with the
    matching HTTP status instead of upstream's 200."""
    return {'success': False, 'code': status,
            'message': {'description': message}}


UPSTREAM_HELP = {
    'success': 'True', 'code': 200, 'message': {'global': 'success'},
    'result': {'description': 'cls server',
               'input': 'base64 string of wavfile',
               'output': 'classification result'}}


def file_result(name, scores, labels, top_k, duration):
    best = top(scores, labels, top_k)
    return {'file': name, 'duration': round(duration, 6),
            'labels': [label for label, _ in best],
            'scores': [s for _, s in best]}


def file_error(name, error):
    return {'file': name, 'error': error.message, 'status': error.status}


def server_timing(timing, total):
    """The ``Server-Timing`` header (shown by browsers' developer tools):
    a request's seconds per stage, and in all until the response started."""
    return ', '.join(f'{k};dur={1000 * v:.2f}' for k, v in
                     [*timing.items(), ('total', total)]).encode('latin-1')


def parse_server_timing(header):
    """``{stage: ms}`` of a ``Server-Timing`` header (for clients)."""
    stages = {}
    for part in header.split(','):
        name, _, dur = part.strip().partition(';dur=')
        if dur:
            stages[name] = float(dur)
    return stages
