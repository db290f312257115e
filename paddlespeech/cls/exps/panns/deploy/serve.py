"""Serve an exported model over HTTP (FastAPI + uvicorn).

Endpoints: POST /paddlespeech/cls and GET /paddlespeech/cls/help
(PaddleSpeech's API: `paddlespeech_client cls --server_ip HOST --port
PORT --input x.wav` works unchanged), POST /v1/classify (multipart upload
of one or more files), WebSocket /v1/stream (live audio: scores per
window and events as they open and close), GET /v1/model, GET /v1/stats, GET /healthz, GET
/readyz, and GET / (a page to drop or record a file). Concurrent requests
are micro-batched; see docs/serving.md. A predictor process that dies is
restarted (its requests get 503 with Retry-After). SIGTERM finishes the
requests in flight (for at most --graceful_timeout seconds), then exits
with status 0.
"""
import logging
import math
import os
import signal
import time

from paddlespeech.cls.runtime import prepare_process, run

prepare_process(paddle=False)  # Paddle runs in the predictor processes

from paddlespeech.cls.config import (LABEL_FILE_HELP, WINDOW_HELP,
                                     ConfigArgumentParser)
from paddlespeech.cls.errors import UserError

API_KEY_ENV = 'PADDLESPEECH_CLS_API_KEY'


def get_parser():
    p = ConfigArgumentParser(description=__doc__)
    p.add('--model_dir', key='export_dir',
          help='directory written by export_model.py (or by upstream '
          'PaddleSpeech\'s)')
    p.add('--label_file', help=LABEL_FILE_HELP)
    p.add('--device', help='cpu, gpu or gpu:N (default: gpu if available)')
    p.add('--cpu_threads', type=int, help='CPU threads per predictor')
    p.add('--window_seconds', type=float, help=WINDOW_HELP)
    p.add('--host', help='address to listen on (0.0.0.0: every interface)')
    p.add('--port', type=int, help='TCP port (PaddleSpeech\'s server: 8090)')
    p.add('--max_batch_size', type=int,
          help='clips of equal length scored in one predictor run')
    p.add('--max_wait_ms', type=float,
          help='longest wait for more clips to fill a batch (only while '
          'other requests are being read)')
    p.add('--max_upload_mb', type=float,
          help='larger request bodies are refused (413)')
    p.add('--max_seconds', type=float,
          help='longer audio is refused (413), and files of more samples '
          'than this many seconds of 48 kHz stereo, by their headers, before '
          'decoding; audio longer than --window_seconds is scored in '
          'windows')
    p.add('--workers', key='serve_workers', type=int,
          help='predictors (one inference thread each) sharing the queue; '
          '--cpu_threads defaults to the cores divided among them')
    p.add('--max_inflight_seconds', type=float,
          help='audio (seconds, from the files\' headers) admitted at once; '
          'a request that does not fit beside those in flight gets 503 with '
          'Retry-After, one over it alone 413')
    p.add('--max_restarts', type=int,
          help='a predictor process that dies is restarted; after this many '
          'failed restarts in a row (backoff 0.5 s, doubling) the server '
          'exits with status 2')
    p.add('--graceful_timeout', type=float,
          help='seconds the requests in flight get to finish after SIGTERM '
          'or Ctrl-C; those still running then get 503 and the inference '
          'processes are ended')
    p.add('--api_key', help=f'require "Authorization: Bearer KEY" on every '
          f'endpoint but /healthz and the page (default: ${API_KEY_ENV})')
    p.add('--allowed_hosts', type=_names,
          help='comma-separated Host names answered, * for any (default: '
          'the loopback names when --host is loopback, else any); others '
          'get 421')
    p.add('--allowed_origins', type=_names,
          help='comma-separated origins (https://app.example.org) whose '
          'pages may call the service, * for any (default: none; without '
          'an API key browsers may send requests only from its own page)')
    p.add('--max_connections', type=int,
          help='open connections at most, kept below the open-file limit '
          '(more are refused with 503; default: 1000, fewer if the limit '
          'is lower)')
    p.add('--header_timeout', type=float,
          help='seconds a connection may take to send a request\'s headers')
    p.add('--body_timeout', type=float,
          help='seconds a request may take to send its body')
    p.add('--keep_alive_timeout', type=float,
          help='seconds an idle connection is kept open between requests')
    return p


def _names(text):
    return [x.strip() for x in text.split(',') if x.strip()]


def check_serve_args(cfg):
    """Every flag checked before the model loads: one line, exit 2."""
    for flag, value, least in (
            ('--max_batch_size', cfg.max_batch_size, 1),
            ('--workers', cfg.serve_workers, 1),
            ('--max_wait_ms', cfg.max_wait_ms, 0),
            ('--max_restarts', cfg.max_restarts, 0),
            ('--graceful_timeout', cfg.graceful_timeout, 0),
            ('--port', cfg.port, 0)):
        if not value >= least:  # NaN too
            raise UserError(f'{flag} must be at least {least}, got {value}')
    if cfg.port > 65535:
        raise UserError(f'--port must be at most 65535, got {cfg.port}')
    for flag, value in (('--max_upload_mb', cfg.max_upload_mb),
                        ('--max_seconds', cfg.max_seconds),
                        ('--window_seconds', cfg.window_seconds),
                        ('--max_wait_ms', cfg.max_wait_ms),
                        ('--max_inflight_seconds', cfg.max_inflight_seconds),
                        ('--graceful_timeout', cfg.graceful_timeout),
                        ('--header_timeout', cfg.header_timeout),
                        ('--body_timeout', cfg.body_timeout),
                        ('--keep_alive_timeout', cfg.keep_alive_timeout)):
        if value is not None and not math.isfinite(value):
            raise UserError(f'{flag} must be a finite number, got {value}')
    for flag, value in (('--max_upload_mb', cfg.max_upload_mb),
                        ('--max_seconds', cfg.max_seconds),
                        ('--window_seconds', cfg.window_seconds),
                        ('--max_connections', cfg.max_connections),
                        ('--header_timeout', cfg.header_timeout),
                        ('--body_timeout', cfg.body_timeout),
                        ('--keep_alive_timeout', cfg.keep_alive_timeout)):
        if value is not None and not value > 0:
            raise UserError(f'{flag} must be positive, got {value}')
    if not cfg.max_inflight_seconds >= cfg.max_seconds:
        raise UserError(f'--max_inflight_seconds ({cfg.max_inflight_seconds:g}'
                        f') must be at least --max_seconds '
                        f'({cfg.max_seconds:g}): a longest file must fit')
    if not os.path.isdir(cfg.export_dir):
        raise UserError(f'--model_dir {cfg.export_dir}: no such directory '
                        f'(export a checkpoint with export_model.py)')


def main(argv):
    cfg = get_parser().parse_config(argv)
    check_serve_args(cfg)
    try:
        import uvicorn
        from paddlespeech.cls.serving import Service, create_app
    except ImportError as e:
        raise UserError(f'the HTTP service needs {e.name}: pip install -r '
                        f"requirements-serve.txt (or 'paddlespeech-cls"
                        f"[serve]')") from e
    from paddlespeech.cls.serving.app import default_allowed_hosts
    from paddlespeech.cls.serving.batcher import GaveUp
    from paddlespeech.cls.opener import open_model
    from paddlespeech.cls.serving.connections import (guarded_protocol,
                                                      reserve_files)
    from paddlespeech.cls.serving.service import default_threads
    from paddlespeech.cls.serving.stream import WS_MAX_QUEUE, WS_MAX_SIZE
    max_connections = reserve_files(cfg.max_connections)

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter('%(asctime)s %(message)s'))
    log = logging.getLogger('paddlespeech.cls.serving')
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    threads = cfg.cpu_threads or default_threads(cfg.serve_workers)
    failed = []

    def fatal(error):
        failed.append(error)
        server.should_exit = True

    service = Service(
        cfg.export_dir,
        lambda: open_model(model_dir=cfg.export_dir, device=cfg.device,
                           cpu_threads=threads, label_file=cfg.label_file,
                           isolated=True),
        cfg.serve_workers, cfg.max_batch_size, cfg.max_wait_ms,
        cfg.max_seconds, cfg.window_seconds, on_fatal=fatal,
        max_restarts=cfg.max_restarts,
        max_inflight_seconds=cfg.max_inflight_seconds,
        label_file=cfg.label_file)
    stopping = []  # when the first stop signal came

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            stopping.append(time.monotonic())
            super().handle_exit(sig, frame)

    def close_timeout():
        """What is left of --graceful_timeout once the requests are done
        (or cancelled): the predictors' queue, then their processes."""
        since = stopping[0] if stopping else time.monotonic()
        return max(1.0, since + cfg.graceful_timeout - time.monotonic())

    hosts, origins = (_names(x) if isinstance(x, str) else x for x in (
        cfg.allowed_hosts, cfg.allowed_origins))
    app = create_app(service, cfg.api_key or os.environ.get(API_KEY_ENV),
                     cfg.max_upload_mb, close_timeout,
                     default_allowed_hosts(cfg.host) if hosts is None
                     else hosts, origins or ())
    server = Server(uvicorn.Config(
        app, host=cfg.host, port=cfg.port, access_log=False,
        timeout_graceful_shutdown=cfg.graceful_timeout,
        http=guarded_protocol(cfg.header_timeout, cfg.body_timeout,
                              max_connections),
        timeout_keep_alive=cfg.keep_alive_timeout,
        ws_max_size=WS_MAX_SIZE, ws_max_queue=WS_MAX_QUEUE))
    # uvicorn shuts down gracefully, then raises the signal again: with
    # this handler that ends the process normally (status 0).
    signal.signal(signal.SIGTERM, lambda *_: None)
    server.run()
    if failed and isinstance(failed[0], GaveUp):
        raise UserError(str(failed[0]))
    if failed:
        raise UserError(f'cannot load {cfg.export_dir}: {failed[0]}')
    return 0


if __name__ == '__main__':
    run(main)
