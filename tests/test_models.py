"""Backbone shapes and parameter counts, and the seed's Python snippet."""
import subprocess
import sys

import numpy as np
import paddle
import pytest

from tests.conftest import ROOT, script_env
from paddlespeech.cls.models import (CNN6, CNN10, CNN14, SoundClassifier,
                                     cnn6, cnn10, cnn14)


def conv_bn(cin, cout, k):
    return k * k * cin * cout + 2 * cout  # conv without bias + BN scale/shift


def expected_trainable(channels, kernels_per_block, k):
    """Parameter count of a PANN computed from its architecture by hand."""
    n, cin = 2 * 64, 1  # bn0 over 64 mel bins
    for cout in channels:
        n += conv_bn(cin, cout, k)
        n += (kernels_per_block - 1) * conv_bn(cout, cout, k)
        cin = cout
    emb = channels[-1]
    return n + emb * emb + emb + emb * 527 + 527


def trainable(model):
    return sum(int(np.prod(p.shape)) for p in model.parameters()
               if not p.stop_gradient)


@pytest.mark.parametrize('cls, channels, per_block, k, published', [
    (CNN14, (64, 128, 256, 512, 1024, 2048), 2, 3, 80_753_615),
    (CNN10, (64, 128, 256, 512), 2, 3, 5_219_279),
    (CNN6, (64, 128, 256, 512), 1, 5, 4_837_455),
])
def test_parameter_count(cls, channels, per_block, k, published):
    model = cls()
    assert trainable(model) == expected_trainable(channels, per_block, k)
    # counted on the PyTorch reference (audioset_tagging_cnn, without the
    # torchlibrosa front end): 80.8 M / 5.2 M / 4.8 M in the PANNs paper
    assert trainable(model) == published


@pytest.mark.parametrize('factory, emb', [(cnn14, 2048), (cnn10, 512),
                                          (cnn6, 512)])
def test_output_shapes(factory, emb):
    x = paddle.randn([2, 1, 101, 64])
    backbone = factory(pretrained=False, extract_embedding=True)
    backbone.eval()
    assert backbone.emb_size == emb
    assert backbone(x).shape == [2, emb]
    tagger = factory(pretrained=False, extract_embedding=False)
    tagger.eval()
    scores = tagger(x).numpy()
    assert scores.shape == (2, 527)
    assert ((scores > 0) & (scores < 1)).all()  # sigmoid
    clf = SoundClassifier(backbone, num_class=7, dropout=0.1)
    clf.eval()
    assert clf(paddle.randn([3, 50, 64])).shape == [3, 7]


@pytest.mark.slow
def test_seed_snippet_runs_verbatim(tmp_path):
    """The seed's snippet with pretrained=False, then with pretrained=True
    offline: the latter must fail with a one-line message naming the URL."""
    snippet = '''
from paddleaudio.datasets import ESC50
from paddlespeech.cls.models import SoundClassifier
from paddlespeech.cls.models import cnn14, cnn10, cnn6

# CNN14
backbone = cnn14(pretrained=PRE, extract_embedding=True)
model = SoundClassifier(backbone, num_class=len(ESC50.label_list))

# CNN10
backbone = cnn10(pretrained=PRE, extract_embedding=True)
model = SoundClassifier(backbone, num_class=len(ESC50.label_list))

# CNN6
backbone = cnn6(pretrained=PRE, extract_embedding=True)
model = SoundClassifier(backbone, num_class=len(ESC50.label_list))
print('ok', list(model.fc.weight.shape))
'''
    env = script_env()
    env['PADDLESPEECH_CLS_HOME'] = str(tmp_path / 'cache')
    ok = subprocess.run([sys.executable, '-c',
                         snippet.replace('PRE', 'False')], env=env, cwd=ROOT,
                        capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert 'ok [512, 50]' in ok.stdout

    # Offline, whatever the machine: a proxy on a closed local port.
    env['http_proxy'] = env['https_proxy'] = 'http://127.0.0.1:9'
    code = ('from paddlespeech.cls.runtime import run\n'
            'run(lambda argv: exec(' + repr(snippet.replace('PRE', 'True'))
            + '))')
    offline = subprocess.run([sys.executable, '-c', code], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    assert offline.returncode == 2
    assert 'Traceback' not in offline.stderr
    assert 'panns_cnn14' in offline.stderr
    assert str(tmp_path / 'cache') in offline.stderr
