"""tag.py end to end: AudioSet labels and the reference model's scores."""
import csv
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests import panns_reference

REPO = Path(__file__).resolve().parents[1]
TAG = REPO / 'paddlespeech' / 'cls' / 'exps' / 'panns' / 'tag.py'
TOP_K = 10
# tag.py runs in a process where torch cannot be imported at all.
WITHOUT_TORCH = ("import runpy, sys; sys.modules['torch'] = None; "
                 "sys.argv = sys.argv[1:]; "
                 "runpy.run_path(sys.argv[0], run_name='__main__')")


def display_names():
    with open(panns_reference.LABELS_CSV, newline='') as f:
        return [row['display_name'] for row in csv.DictReader(f)]


def parse_blocks(stdout):
    """``{path: [(label, score), ...]}`` of tag.py's output."""
    blocks, current = {}, None
    for line in stdout.splitlines():
        header = re.fullmatch(r'\[(.+)\]', line)
        if header:
            current = blocks.setdefault(header.group(1), [])
        else:
            label, _, score = line.rpartition(': ')
            current.append((label, float(score)))
    return blocks


@pytest.fixture(scope='module')
def clips(tmp_path_factory):
    """Two wav files (float, so no quantisation) and an unreadable one."""
    folder = tmp_path_factory.mktemp('clips')
    waveforms = panns_reference.test_waveforms()
    files = {}
    for name, index in (('tone.wav', 0), ('chirp.wav', 2)):
        path = folder / name
        sf.write(path, waveforms[index], panns_reference.SAMPLE_RATE,
                 subtype='FLOAT')
        files[str(path)] = waveforms[index]
    broken = folder / 'broken.wav'
    broken.write_text('not audio')
    return files, broken


def check_output(stdout, files, reference_model):
    names = display_names()
    blocks = parse_blocks(stdout)
    assert list(blocks) == list(files)
    for path, lines in blocks.items():
        assert len(lines) == TOP_K
        labels = [label for label, _ in lines]
        scores = np.array([score for _, score in lines])
        assert set(labels) <= set(names)
        assert np.all(np.diff(scores) <= 0), 'not sorted best first'
        ref_scores, _ = panns_reference.reference_outputs(reference_model,
                                                          files[path])
        ref_scores = ref_scores[0]
        expected = [ref_scores[names.index(label)] for label in labels]
        np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-4)
        assert scores[-1] >= np.sort(ref_scores)[-TOP_K] - 1e-4


def test_tag_script(reference, clips):
    files, broken = clips
    paths = list(files)
    result = subprocess.run(
        [sys.executable, '-c', WITHOUT_TORCH, str(TAG), '--arch', 'cnn6',
         '--checkpoint', str(reference('cnn6').pdparams), '--device', 'cpu',
         '--top_k', str(TOP_K), '--wav', paths[0], str(broken), paths[1]],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines()
              if line.startswith('error:')]
    assert len(errors) == 1 and str(broken) in errors[0]
    check_output(result.stdout, files, reference('cnn6').model)


@pytest.fixture(scope='module')
def tag_main():
    return runpy.run_path(str(TAG))['main']


def test_paddle_front_end_and_cached_weights(reference, clips, tag_main,
                                             tmp_path, monkeypatch, capsys):
    """No --checkpoint: the weights come from the cache, as after a download."""
    monkeypatch.setenv('PADDLESPEECH_CLS_HOME', str(tmp_path))
    (tmp_path / 'panns_cnn6.pdparams').write_bytes(
        reference('cnn6').pdparams.read_bytes())
    files, _ = clips
    status = tag_main(['--arch', 'cnn6', '--feat_backend', 'paddle',
                       '--device', 'cpu', '--top_k', str(TOP_K), '--wav',
                       *files])
    assert status == 0
    check_output(capsys.readouterr().out, files, reference('cnn6').model)


def test_fine_tuned_checkpoint_is_refused(clips, tag_main, tmp_path):
    import paddle
    from paddlespeech.cls.errors import UserError
    classifier = tmp_path / 'model.pdparams'
    paddle.save({'fc.weight': paddle.zeros([512, 50]), '_meta': '{}'},
                str(classifier))
    files, _ = clips
    with pytest.raises(UserError, match='predict.py'):
        tag_main(['--arch', 'cnn6', '--checkpoint', str(classifier),
                  '--device', 'cpu', '--wav', *files])
