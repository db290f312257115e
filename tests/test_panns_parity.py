"""Converted PANNs + our front ends reproduce the PyTorch reference.

The reference runs on the waveform (torchlibrosa front end inside the
model); ours runs the numpy or paddle log-mel, then the Paddle model with
the weights written by the converter.
"""
import numpy as np
import paddle
import pytest

from tests import panns_reference
from paddlespeech.cls.features import FeatureConfig, NumpyLogMel, paddle_logmel
from paddlespeech.cls.models import BACKBONES
from paddlespeech.cls.runtime import set_cpu_threads

SCORE_ATOL = 1e-4
EMBEDDING_RTOL = 1e-4
LOGMEL_ATOL_DB = 1e-2


@pytest.fixture(scope='module')
def waveforms():
    set_cpu_threads()
    return panns_reference.test_waveforms()


@pytest.fixture(scope='module')
def logmels(waveforms):
    """``{backend: [clips, 1, frames, mels]}`` from our two front ends."""
    feature = FeatureConfig()
    numpy_logmel = NumpyLogMel(feature)
    with paddle.no_grad():
        by_paddle = paddle_logmel(feature)(paddle.to_tensor(waveforms))
    return {
        'numpy': np.stack([numpy_logmel(w) for w in waveforms])[:, None],
        'paddle': by_paddle.numpy()[:, None],
    }


def max_rel(ours, ref):
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


def test_front_ends_match_torchlibrosa(waveforms, logmels):
    ref = panns_reference.reference_logmel(waveforms)
    for backend, logmel in logmels.items():
        assert logmel.shape == ref.shape, backend
        diff = float(np.abs(logmel - ref).max())
        print(f'log-mel {backend}: max abs diff {diff:.2e} dB')
        assert diff <= LOGMEL_ATOL_DB, backend


def outputs(model, logmel):
    """``(scores, embedding)`` of one model for ``[clips, 1, frames, mels]``."""
    x = paddle.to_tensor(logmel)
    with paddle.no_grad():
        model.extract_embedding = False
        scores = model(x).numpy()
        model.extract_embedding = True
        embedding = model(x).numpy()
    return scores, embedding


@pytest.mark.parametrize('arch', [
    pytest.param(a, marks=pytest.mark.slow) if a == 'cnn14' else a
    for a in panns_reference.ARCHS])
def test_converted_model_matches_reference(arch, reference, waveforms,
                                           logmels):
    ref = reference(arch)
    ref_scores, ref_embedding = panns_reference.reference_outputs(
        ref.model, waveforms)
    model = BACKBONES[arch](pretrained=True, extract_embedding=False,
                            pretrained_path=ref.pdparams)
    model.eval()
    for backend, logmel in logmels.items():
        scores, embedding = outputs(model, logmel)
        score_diff = float(np.abs(scores - ref_scores).max())
        embedding_diff = max_rel(embedding, ref_embedding)
        print(f'{arch} {backend}: scores max abs diff {score_diff:.2e}, '
              f'embedding max rel diff {embedding_diff:.2e}')
        assert scores.shape == ref_scores.shape == (len(waveforms), 527)
        assert score_diff <= SCORE_ATOL, backend
        assert embedding_diff <= EMBEDDING_RTOL, backend

    # The tolerances are meaningful: a front end off by 0.1 dB fails them.
    scores, embedding = outputs(model, logmels['numpy'] + 0.1)
    assert np.abs(scores - ref_scores).max() > 10 * SCORE_ATOL
    assert max_rel(embedding, ref_embedding) > 10 * EMBEDDING_RTOL

    trainable = sum(int(p.numel()) for p in model.parameters()
                    if not p.stop_gradient)
    assert trainable == panns_reference.count_parameters(ref.model)
