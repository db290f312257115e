"""open_model: every kind of model behind one protocol, scores and
embeddings that agree across a checkpoint, its exports and a child
process, and the AudioSet tagger's embedding equal to the PyTorch
reference's."""
import json
import subprocess
import sys

import numpy as np
import pytest

from tests import panns_reference
from paddlespeech.cls import open_model
from paddlespeech.cls.errors import UserError
from paddlespeech.cls.export import export

EMBEDDING_ATOL = 1e-4


def waves(sr, n=3, seconds=0.5, seed=0):
    rng = np.random.default_rng(seed)
    return [(0.3 * rng.standard_normal(int(sr * seconds))).astype(np.float32)
            for _ in range(n)]


@pytest.fixture(scope='module')
def exports(trained_checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp('open_model')
    return {
        'logmel': export(trained_checkpoint, root / 'logmel'),
        'waveform': export(trained_checkpoint, root / 'waveform',
                           include_frontend=True),
        'onnx': export(trained_checkpoint, root / 'onnx', format='onnx'),
    }


def test_embeddings_agree_across_checkpoint_and_exports(trained_checkpoint,
                                                       exports):
    ckpt = open_model(checkpoint=trained_checkpoint, device='cpu',
                      cpu_threads=1)
    x = waves(ckpt.feature.sample_rate)
    emb, scores = ckpt.embeddings(x), ckpt.scores(x)
    assert emb.shape == (3, ckpt.embedding_size) == (3, 512)
    assert ckpt.backbone == 'cnn6' and ckpt.meta.embedding_size == 512
    # the embedding is what the head reads: softmax(emb @ W + b) = scores
    fc = ckpt.model.fc
    logits = emb @ fc.weight.numpy() + fc.bias.numpy()
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(e / e.sum(axis=1, keepdims=True), scores,
                               atol=1e-5)
    assert np.abs(emb).max() > 1e-3  # not a vector of zeros
    for kind, out in exports.items():
        model = open_model(model_dir=out, device='cpu', cpu_threads=1)
        assert model.meta.embedding_size == 512, kind
        assert model.labels == ckpt.labels
        np.testing.assert_allclose(model.embeddings(x), emb,
                                   atol=EMBEDDING_ATOL, err_msg=kind)
        np.testing.assert_allclose(model.scores(x), scores, atol=1e-5,
                                   err_msg=kind)
    # other audio gives other embeddings: the comparison can fail
    other = ckpt.embeddings(waves(ckpt.feature.sample_rate, seed=1))
    assert np.abs(other - emb).max() > 100 * EMBEDDING_ATOL


def test_child_process_model_answers_as_in_process(exports):
    out = exports['logmel']
    local = open_model(model_dir=out, device='cpu', cpu_threads=1)
    x = waves(local.feature.sample_rate)
    with open_model(model_dir=out, device='cpu', cpu_threads=1,
                    isolated=True) as child:
        assert child.alive and child.labels == local.labels
        assert child.meta == local.meta and child.clip_seconds == 0.5
        np.testing.assert_allclose(child.scores(x), local.scores(x),
                                   atol=1e-6)
        np.testing.assert_allclose(child.embeddings(x), local.embeddings(x),
                                   atol=1e-6)
        assert child.windowing().samples(32000)[0] == 16000
    assert not child.alive


def test_export_without_embedding_output_says_so(exports, tmp_path):
    """model.json of schema 1 (no embedding_size): scores as before, and
    embeddings refused in one line that says how to get them."""
    import shutil
    old = tmp_path / 'old'
    shutil.copytree(exports['logmel'], old)
    meta = json.loads((old / 'model.json').read_text())
    del meta['embedding_size']
    meta['version'] = 1
    (old / 'model.json').write_text(json.dumps(meta))
    model = open_model(model_dir=old, device='cpu', cpu_threads=1)
    x = waves(model.feature.sample_rate, n=1)
    assert model.scores(x).shape == (1, 3)
    with pytest.raises(UserError, match='export the checkpoint again'):
        model.embeddings(x)


def test_tagger_embedding_matches_pytorch_reference(reference):
    ref = reference('cnn6')
    x = list(panns_reference.test_waveforms())
    ref_scores, ref_embedding = panns_reference.reference_outputs(
        ref.model, np.stack(x))
    tagger = open_model(arch='cnn6', pretrained=ref.pdparams, device='cpu')
    assert len(tagger.labels) == 527 and tagger.task.multi_label
    emb = tagger.embeddings(x)
    rel = np.abs(emb - ref_embedding).max() / np.abs(ref_embedding).max()
    assert rel <= 1e-4, rel
    assert np.abs(tagger.scores(x) - ref_scores).max() <= 1e-4


@pytest.mark.parametrize('kwargs, message', [
    ({}, 'exactly one of'),
    ({'checkpoint': 'a', 'model_dir': 'b'}, 'exactly one of'),
    ({'checkpoint': 'a', 'pretrained': 'w'}, 'pretrained weights go with'),
])
def test_open_model_refuses_ambiguous_requests(kwargs, message):
    with pytest.raises(UserError, match=message):
        open_model(**kwargs)


def test_importing_the_package_stays_light():
    code = ('import sys, paddlespeech.cls as c; '
            'print(sorted(m for m in ("paddle", "paddlespeech.cls.opener", '
            '"numpy") if m in sys.modules)); c.open_model; '
            'print("paddlespeech.cls.opener" in sys.modules, '
            '"paddle" in sys.modules)')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, check=True).stdout.split('\n')
    assert out[0] == '[]' and out[1] == 'True False'
