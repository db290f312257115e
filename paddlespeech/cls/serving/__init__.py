"""The HTTP service (``deploy/serve.py``): PaddleSpeech's ``/paddlespeech/cls``
API and this recipe's ``/v1`` endpoints over one micro-batched predictor
pool. See docs/serving.md."""
import importlib
from dataclasses import dataclass
from typing import Optional, Union


@dataclass
class ServeConfig:
    """The ``serve:`` section; ``workers`` is ``serve_workers`` in flat
    files (``serve.py --workers``). The app needs the ``[serve]`` extras
    and loads on first use, so reading this section does not."""
    FLAT = {'workers': 'serve_workers'}
    host: str = '127.0.0.1'
    port: int = 8090  # as PaddleSpeech's server
    max_batch_size: int = 8  # clips per predictor run
    # wait for a fuller batch, only while requests arrive
    max_wait_ms: float = 10.0
    max_upload_mb: float = 20.0  # larger request bodies: 413
    max_seconds: float = 600.0  # longer audio: 413
    workers: int = 1  # predictors sharing the queue
    max_inflight_seconds: float = 1800.0  # audio admitted at once; more: 503
    max_restarts: int = 5  # failed restarts of a dead predictor in a row
    graceful_timeout: float = 30.0  # seconds requests get to finish at stop
    # None: loopback names when bound to loopback, else any host
    allowed_hosts: Optional[Union[str, list]] = None
    # None: only the service's own page (same origin)
    allowed_origins: Optional[Union[str, list]] = None
    max_connections: Optional[int] = None  # None: 1000, or under the limit
    header_timeout: float = 10.0  # seconds to send a request's headers
    body_timeout: float = 60.0  # seconds to send a request's body
    keep_alive_timeout: float = 5.0  # idle seconds between requests
    # None: $PADDLESPEECH_CLS_API_KEY, else no key
    api_key: Optional[str] = None


_HOMES = {'create_app': '.app', 'MicroBatcher': '.batcher',
          'Service': '.service'}

__all__ = ['ServeConfig', *_HOMES]


def __getattr__(name):
    if name not in _HOMES:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    return getattr(importlib.import_module(_HOMES[name], __name__), name)
