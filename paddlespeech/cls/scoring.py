"""One protocol for every model a tool opens: :class:`SoundModel`.

A fine-tuned checkpoint (dynamic graph, :class:`CheckpointModel`), an
export (:class:`..inference.Predictor`: ``paddle.inference`` or ONNX
Runtime), the AudioSet tagger (:class:`TaggerModel`) and a predictor in a
child process (:class:`..serving.process.ProcessPredictor`) all give
``scores(waves)`` and ``embeddings(waves)`` and describe themselves in
one :class:`..artifact.ExportMeta`. :func:`..opener.open_model` picks one.
"""
from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from .artifact import ExportMeta
from .audio import Windowing
from .errors import UserError
from .features import FeatureConfig, FrontEnd

# PANNs were trained on AudioSet's 10-second clips.
AUDIOSET_CLIP_SECONDS = 10.0


@dataclass
class Prepared:
    """A batch already through a model's front end
    (:meth:`SoundModel.front_end`): what its graph runs on, which
    ``scores`` and ``embeddings`` then take in place of the waves."""
    inputs: np.ndarray


class ModelInputs:
    """``waves -> Prepared``: the log-mel features of ``feature`` (numpy
    front end) or, with ``feature`` None, the waves stacked. Picklable, so
    that another process can run it while the model runs."""

    def __init__(self, feature: Optional[FeatureConfig]):
        self.feature, self._frontend = feature, None

    def __call__(self, waves):
        if isinstance(waves, Prepared):
            return waves
        if self.feature is None:
            return Prepared(np.stack(waves).astype(np.float32))
        if self._frontend is None:
            self._frontend = FrontEnd(self.feature, 'numpy')
        return Prepared(self._frontend.numpy(waves).astype(np.float32))

    def __getstate__(self):
        return {'feature': self.feature, '_frontend': None}


class SoundModel:
    """``scores(waves)`` / ``embeddings(waves)``: equal-length mono float32
    waveforms at ``feature.sample_rate`` -> numpy ``[n, len(labels)]``
    (softmax, or an independent sigmoid per class for a multi-label
    model) / ``[n, embedding_size]`` (the backbone's embedding, the input
    of the classification head). ``meta`` describes the model as
    ``model.json`` does; ``clip_seconds`` is the clip length it was trained
    on, where recorded; ``pad_windows``: whether short windows are padded
    to it (:meth:`windowing`). Calling the model is ``scores``."""
    meta: ExportMeta
    source: str
    pad_windows: bool = True

    def scores(self, waves) -> np.ndarray:
        raise NotImplementedError

    def embeddings(self, waves) -> np.ndarray:
        raise NotImplementedError

    def scores_and_embeddings(self, waves):
        """``(scores, embeddings)`` of one batch; a model whose one run
        gives both overrides it."""
        return self.scores(waves), self.embeddings(waves)

    def __call__(self, waves):
        return self.scores(waves)

    def front_end(self):
        """The model's work on a batch that needs no model, as a picklable
        ``waves -> Prepared`` (:class:`ModelInputs`) whose result
        ``scores`` and ``embeddings`` take, so that a reading process does
        it while the model runs; None: the model takes the waves."""
        return None

    @property
    def labels(self) -> List[str]:
        return self.meta.label_list

    @property
    def feature(self) -> FeatureConfig:
        return self.meta.feature

    @property
    def task(self):
        return self.meta.task

    @property
    def clip_seconds(self) -> Optional[float]:
        return self.meta.clip_seconds

    @property
    def backbone(self) -> Optional[str]:
        return self.meta.backbone

    @property
    def embedding_size(self) -> Optional[int]:
        return self.meta.embedding_size

    def windowing(self, window_seconds=None, hop_seconds=None):
        """The model's :class:`..audio.Windowing` (``window_seconds``
        overrides its clip length)."""
        return Windowing.of_model(
            self.clip_seconds if self.pad_windows else None,
            window_seconds or self.clip_seconds, hop_seconds)

    def close(self):
        """Frees what the model holds outside this process (a child)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class CheckpointModel(SoundModel):
    """A ``train.py`` (or upstream) checkpoint through the dynamic graph."""

    def __init__(self, checkpoint, expected_backbone=None, label_file=None,
                 feat_backend='numpy'):
        from .models import load_classifier
        self.model, labels, feature = load_classifier(
            checkpoint, expected_backbone, label_file)
        self.frontend = FrontEnd(feature, feat_backend)
        self.source = str(checkpoint)
        m = self.model.meta
        self.meta = ExportMeta(
            label_list=labels, feature=feature, backbone=m['backbone'],
            multi_label=self.model.task.multi_label,
            clip_seconds=m.get('clip_seconds'), checkpoint=self.source,
            embedding_size=self.model.backbone.emb_size,
            thresholds=m.get('thresholds'))

    def scores(self, waves):
        import paddle
        with paddle.no_grad():
            return self.model.probabilities(self.frontend(waves)).numpy()

    def embeddings(self, waves):
        import paddle
        with paddle.no_grad():
            return self.model.embed(self.frontend(waves)).numpy()


class TaggerModel(SoundModel):
    """The 527-class AudioSet tagger of ``arch`` (sigmoid scores), with the
    weights of ``pretrained_path`` (None: the pretrained download). It
    windows as ``panns_inference`` tags a short clip: unpadded."""
    pad_windows = False

    def __init__(self, arch, pretrained_path=None, feat_backend='numpy'):
        from .models.panns.registry import audioset_labels, build_tagger
        self.model = build_tagger(arch, pretrained_path)
        feature = FeatureConfig()
        self.frontend = FrontEnd(feature, feat_backend)
        self.source = f'{arch} AudioSet tagger'
        self.meta = ExportMeta(
            label_list=audioset_labels(), feature=feature, backbone=arch,
            multi_label=True, clip_seconds=AUDIOSET_CLIP_SECONDS,
            checkpoint=pretrained_path, embedding_size=self.model.emb_size)

    def _logmel(self, waves):
        return self.frontend(waves)[:, None]

    def scores(self, waves):
        import paddle
        with paddle.no_grad():
            return self.model(self._logmel(waves)).numpy()

    def embeddings(self, waves):
        import paddle
        with paddle.no_grad():
            return self.model.embed(self._logmel(waves)).numpy()


def check_tagger_feature(feature, config=None):
    """The PANNs weights were trained with the default front end: refuse a
    ``feature`` section (of the file ``config``) that says otherwise."""
    if feature is not None and feature != FeatureConfig():
        raise UserError('the PANNs weights were trained with the default '
                        'feature settings; remove the feature section from '
                        f'{config or "the config"} to use them')


def softmax(logits):
    """Row-wise softmax of numpy logits."""
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def top_k(scores, k):
    """Indices of the ``k`` best of a score vector, best first (ties in
    class order)."""
    return np.argsort(-np.asarray(scores), kind='stable')[:k]
