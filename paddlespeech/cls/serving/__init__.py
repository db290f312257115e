"""The HTTP service (``deploy/serve.py``): PaddleSpeech's ``/paddlespeech/cls``
API and this recipe's ``/v1`` endpoints over one micro-batched predictor
pool. See docs/serving.md."""
from .app import create_app
from .batcher import MicroBatcher
from .service import Service

__all__ = ['create_app', 'MicroBatcher', 'Service']
