"""The PyTorch -> Paddle converter: CLI, accepted layouts and refusals."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest
import torch

from paddlespeech.cls.exps.panns import convert as cli
from paddlespeech.cls.models.panns import convert as converter
from paddlespeech.cls.runtime import run

REPO = Path(__file__).resolve().parents[1]


def reference_state(reference, arch='cnn6'):
    return dict(reference(arch).model.state_dict())


def assert_same_weights(path_a, path_b):
    a, b = paddle.load(str(path_a)), paddle.load(str(path_b))
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_array_equal(a[name].numpy(), b[name].numpy(), name)


def test_cli_writes_what_the_function_writes(reference, tmp_path):
    out = tmp_path / 'out.pdparams'
    result = subprocess.run(
        [sys.executable, '-m', 'paddlespeech.cls.exps.panns.convert',
         '--arch', 'cnn6', '--input', str(reference('cnn6').pth),
         '--output', str(out)],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f'wrote {out}' in result.stdout
    assert_same_weights(out, reference('cnn6').pdparams)
    assert [p.name for p in tmp_path.iterdir()] == ['out.pdparams']


def test_help_explains_every_flag():
    text = cli.get_parser().format_help()
    for flag in ('--arch', '--input', '--output'):
        assert flag in text
    assert 'Cnn14_mAP=0.431.pth' in text and "{'model'" in text


def test_mapping(reference):
    state = reference_state(reference)
    converted = converter.convert_state_dict('cnn6', {'model': state})
    assert 'bn0._mean' in converted and 'bn0._variance' in converted
    assert not any(k.startswith(converter.FRONT_END_PREFIXES) or
                   'running' in k or 'num_batches' in k for k in converted)
    np.testing.assert_array_equal(converted['bn0._variance'],
                                  state['bn0.running_var'].numpy())
    np.testing.assert_array_equal(converted['fc_audioset.weight'],
                                  state['fc_audioset.weight'].numpy().T)
    assert all(v.dtype == np.float32 for v in converted.values())


def test_plain_state_dict_is_accepted(reference):
    state = reference_state(reference)
    plain = converter.convert_state_dict('cnn6', state)
    wrapped = converter.convert_state_dict('cnn6', {'model': state,
                                                    'iteration': 1})
    assert plain.keys() == wrapped.keys()


@pytest.mark.parametrize('edit, expected', [
    (lambda s: s.pop('conv_block3.bn1.running_var'),
     'missing tensor conv_block3.bn1.running_var [256]'),
    (lambda s: s.update({'conv_block5.conv1.weight': torch.zeros(3)}),
     'unexpected tensor conv_block5.conv1.weight'),
    (lambda s: s.update({'fc1.weight': torch.zeros(512, 256)}),
     'tensor fc1.weight has shape [512, 256], expected [512, 512]'),
], ids=['missing', 'unexpected', 'mis-shaped'])
def test_refuses_bad_checkpoints(reference, edit, expected):
    state = reference_state(reference)
    edit(state)
    with pytest.raises(converter.ConversionError) as e:
        converter.convert_state_dict('cnn6', {'model': state},
                                     source='ckpt.pth')
    assert expected in str(e.value)
    assert 'ckpt.pth is not an original cnn6 checkpoint' in str(e.value)


def test_wrong_arch_is_refused(reference):
    with pytest.raises(converter.ConversionError, match='conv_block1.conv2'):
        converter.convert_state_dict('cnn10', reference_state(reference))


def run_cli(argv, capsys):
    with pytest.raises(SystemExit) as e:
        run(cli.main, argv)
    return e.value.code, capsys.readouterr()


def test_cli_error_is_one_line_and_writes_nothing(reference, tmp_path,
                                                  capsys):
    state = reference_state(reference)
    del state['fc1.bias']
    bad = tmp_path / 'bad.pth'
    torch.save({'model': state}, bad)
    out = tmp_path / 'out.pdparams'
    code, captured = run_cli(['--arch', 'cnn6', '--input', str(bad),
                              '--output', str(out)], capsys)
    assert code == 2
    assert captured.err.count('\n') == 1
    assert 'missing tensor fc1.bias' in captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ['bad.pth']


def test_unreadable_checkpoint(tmp_path, capsys):
    junk = tmp_path / 'junk.pth'
    junk.write_bytes(b'not a checkpoint')
    code, captured = run_cli(['--arch', 'cnn6', '--input', str(junk),
                              '--output', str(tmp_path / 'o.pdparams')],
                             capsys)
    assert code == 2
    assert f'cannot read {junk} as a PyTorch checkpoint' in captured.err


def test_missing_torch_is_explained(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, 'torch', None)
    with pytest.raises(converter.ConversionError, match='needs torch'):
        converter.load_torch_checkpoint(tmp_path / 'x.pth')
