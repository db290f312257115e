"""The three sources of class scores the prediction scripts use: a
fine-tuned checkpoint (dynamic graph), an export (``paddle.inference``,
the fast path) and the AudioSet tagger. Each gives a :class:`Scorer`, so
``predict.py``, ``tag.py`` and ``detect.py`` score waveforms the same way.
"""
from dataclasses import dataclass
from typing import Callable, List, Optional

from .audio import Windowing
from .errors import UserError
from .features import FeatureConfig, FrontEnd

# PANNs were trained on AudioSet's 10-second clips.
AUDIOSET_CLIP_SECONDS = 10.0


@dataclass
class Scorer:
    """``score(waves)``: equal-length float32 waveforms at
    ``feature.sample_rate`` -> scores ``[batch, len(labels)]``;
    ``multi_label``: independent sigmoid scores (else softmax, summing to
    one); ``clip_seconds``: the length of the clips the model was trained
    on, where the model records it (checkpoints from train.py and their
    exports do; upstream ones do not); ``pad_windows``: whether short
    windows are padded to it (:meth:`windowing`)."""
    score: Callable
    labels: List[str]
    feature: FeatureConfig
    multi_label: bool
    source: str
    clip_seconds: Optional[float] = None
    pad_windows: bool = True

    def windowing(self, window_seconds=None, hop_seconds=None):
        """The model's :class:`..audio.Windowing` (``window_seconds``
        overrides its clip length)."""
        return Windowing.of_model(
            self.clip_seconds if self.pad_windows else None,
            window_seconds or self.clip_seconds, hop_seconds)


def checkpoint_scorer(checkpoint, expected_backbone=None, label_file=None,
                      feat_backend='numpy'):
    """A ``train.py`` (or upstream) checkpoint through the dynamic graph."""
    import paddle
    from .models import load_classifier
    model, labels, feature = load_classifier(checkpoint, expected_backbone,
                                             label_file)
    frontend = FrontEnd(feature, feat_backend)

    @paddle.no_grad()
    def score(waves):
        return model.probabilities(frontend(waves)).numpy()

    return Scorer(score, labels, feature, model.task.multi_label,
                  str(checkpoint), model.meta.get('clip_seconds'))


def export_scorer(model_dir, device='cpu', cpu_threads=None, **predictor_kw):
    """An export through :class:`..inference.Predictor` (ONNX and INT8
    exports too, where the predictor reads them)."""
    from .inference import Predictor
    predictor = Predictor(model_dir, device, cpu_threads, **predictor_kw)
    return Scorer(predictor, predictor.labels, predictor.feature,
                  predictor.task.multi_label, str(model_dir),
                  predictor.clip_seconds)


def tagger_scorer(arch, pretrained_path=None, feat_backend='numpy',
                  feature=None, config=None):
    """The 527-class AudioSet tagger of ``arch`` (sigmoid scores).
    ``feature``: the front end configured (in the file ``config``), which
    must be the default one the PANNs weights were trained with."""
    import paddle
    from .models.panns.registry import audioset_labels, build_tagger
    if feature is not None and feature != FeatureConfig():
        raise UserError('the PANNs weights were trained with the default '
                        'feature settings; remove the feature section from '
                        f'{config or "the config"} to use them')
    feature = FeatureConfig()
    model = build_tagger(arch, pretrained_path)
    frontend = FrontEnd(feature, feat_backend)

    @paddle.no_grad()
    def score(waves):
        return model(frontend(waves)[:, None]).numpy()

    # as panns_inference tags a short clip: unpadded
    return Scorer(score, audioset_labels(), feature, True,
                  f'{arch} AudioSet tagger', AUDIOSET_CLIP_SECONDS,
                  pad_windows=False)
