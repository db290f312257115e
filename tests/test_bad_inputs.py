"""Bad audio and bad arguments: every readable file is predicted, every
unusable one gets one ``error:`` line naming it, and wrong arguments give
one clear line, never a traceback; long files stay within bounded memory;
training refuses (or skips) unreadable clips."""
import ast
import csv
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import paddle
import pytest
import soundfile as sf

from tests.conftest import (ROOT, SCRIPTS, make_synthetic, run_script,
                            script_env, train_args)
from paddlespeech.cls import prediction, runtime
from paddlespeech.cls.audio import Windowing
from paddlespeech.cls.features import FeatureConfig
from paddlespeech.cls.models import BACKBONES, load_classifier
from tests.test_recipe import parse_blocks

# Runs a script and reports its peak resident memory on stderr at exit.
WITH_MAXRSS = ("import atexit, resource, runpy, sys; atexit.register(lambda: "
               "print('maxrss_kb', resource.getrusage(resource.RUSAGE_SELF)"
               ".ru_maxrss, file=sys.stderr)); sys.argv = sys.argv[1:]; "
               "runpy.run_path(sys.argv[0], run_name='__main__')")


def tone(seconds, sr, channels=1, amplitude=0.3, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = amplitude * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(
        len(t))
    return np.repeat(x[:, None], channels, 1) if channels > 1 else x


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
    """``(good, bad)``: readable files, and unusable ones -> expected reason."""
    d = tmp_path_factory.mktemp('corpus')
    good = {
        'normal.wav': (tone(2, 44100), 44100, 'PCM_16'),
        'tiny.wav': (tone(0.01, 32000), 32000, 'PCM_16'),
        'long_25s.wav': (tone(25, 16000), 16000, 'PCM_16'),
        'stereo_48k.wav': (tone(1, 48000, channels=2), 48000, 'PCM_16'),
        'pcm8_8k.wav': (tone(1, 8000), 8000, 'PCM_U8'),
        'pcm24_96k.wav': (tone(1, 96000), 96000, 'PCM_24'),
        'huge.wav': (tone(1, 32000, amplitude=1e30), 32000, 'FLOAT'),
        'silence.wav': (np.zeros(32000), 32000, 'PCM_16'),
        'normal.flac': (tone(2, 44100), 44100, 'PCM_16'),
        'normal.ogg': (tone(2, 44100), 44100, 'VORBIS'),
        'name with spaces ünïcødé 音.wav': (tone(1, 22050), 22050, 'PCM_16'),
    }
    for name, (x, sr, subtype) in good.items():
        sf.write(d / name, x, sr, subtype=subtype)
    normal = (d / 'normal.wav').read_bytes()
    (d / 'data_cut_short.wav').write_bytes(normal[:44 + 2000])  # header
    good = [d / name for name in [*good, 'data_cut_short.wav']]  # says more

    bad = {'empty.wav': 'empty file', 'text.wav': 'Format not recognised',
           'truncated_header.wav': 'cannot read audio',
           'x.wav': 'is a directory', 'dangling.wav': 'dangling symbolic link',
           'missing.wav': 'no such file',
           'nan.wav': 'NaN or infinite', 'inf.wav': 'NaN or infinite'}
    (d / 'empty.wav').write_bytes(b'')
    (d / 'text.wav').write_text('this is not audio\n' * 10)
    (d / 'truncated_header.wav').write_bytes(normal[:20])
    (d / 'x.wav').mkdir()
    os.symlink(d / 'gone.wav', d / 'dangling.wav')
    for name, value in (('nan.wav', np.nan), ('inf.wav', np.inf)):
        x = tone(1, 32000)
        x[1000] = value
        sf.write(d / name, x, 32000, subtype='FLOAT')
    bad = {d / name: reason for name, reason in bad.items()}
    return good, bad


@pytest.fixture(scope='module')
def ten_minutes(tmp_path_factory):
    path = tmp_path_factory.mktemp('long') / 'ten_minutes.wav'
    sf.write(path, tone(600, 8000), 8000, subtype='PCM_16')
    return path


def run_with_maxrss(script, *args):
    proc = subprocess.run(
        [sys.executable, '-c', WITH_MAXRSS, str(SCRIPTS / script),
         *map(str, args)], capture_output=True, text=True, env=script_env(),
        timeout=600)
    maxrss = int(re.search(r'maxrss_kb (\d+)', proc.stderr).group(1))
    return proc, maxrss * 1024


def check_corpus_run(proc, good, bad, num_class, sums_to_one=True):
    """Every good file predicted with finite scores, one line per bad one."""
    assert 'Traceback' not in proc.stderr
    assert proc.returncode == 1, proc.stderr
    blocks = parse_blocks(proc.stdout)
    assert sorted(blocks) == sorted(map(str, good))
    for path, scores in blocks.items():
        assert len(scores) == num_class
        values = np.array(list(scores.values()))
        assert np.isfinite(values).all(), path
        if sums_to_one:
            assert values.sum() == pytest.approx(1, abs=1e-4), path
    lines = proc.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith('error: ')]
    assert len(errors) == len(bad), proc.stderr
    for path, reason in bad.items():
        mine = [line for line in errors if line.startswith(f'error: {path}: ')]
        assert len(mine) == 1 and reason in mine[0], (path, errors)
    return blocks


@pytest.fixture(scope='module')
def dynamic_run(trained_checkpoint, corpus):
    good, bad = corpus
    return run_with_maxrss('predict.py', '--checkpoint', trained_checkpoint,
                           '--wav', *[*good, *bad][::-1], '--top_k', 3,
                           '--cpu_threads', 2)


def test_predict_corpus(dynamic_run, corpus):
    check_corpus_run(dynamic_run[0], *corpus, num_class=3)


def test_deploy_corpus_matches_predict(dynamic_run, corpus,
                                       trained_checkpoint, tmp_path):
    good, bad = corpus
    run_script('export_model.py', '--checkpoint', trained_checkpoint,
               '--output_dir', tmp_path)
    proc = run_script('deploy/predict.py', '--model_dir', tmp_path, '--wav',
                      *bad, *good, '--top_k', 3, '--batch_size', 4,
                      '--cpu_threads', 2, check=False)
    deployed = check_corpus_run(proc, good, bad, num_class=3)
    dynamic = parse_blocks(dynamic_run[0].stdout)
    for path in map(str, good):
        for label, p in dynamic[path].items():
            assert deployed[path][label] == pytest.approx(p, abs=1e-4), path


def test_tag_corpus(corpus, tmp_path):
    good, bad = corpus
    weights = tmp_path / 'cnn6_random.pdparams'
    paddle.seed(0)
    paddle.save(BACKBONES['cnn6'](extract_embedding=False).state_dict(),
                str(weights))
    proc = run_script('tag.py', '--arch', 'cnn6', '--checkpoint', weights,
                      '--wav', *good, *bad, '--top_k', 527,
                      '--cpu_threads', 2, check=False)
    check_corpus_run(proc, good, bad, num_class=527, sums_to_one=False)


@pytest.mark.slow
def test_ten_minutes_in_bounded_memory(dynamic_run, trained_checkpoint,
                                       ten_minutes):
    """60000 frames through a CNN at once would need gigabytes; windows of
    10 s keep the peak at what the 25 s and shorter corpus files need."""
    proc, peak = run_with_maxrss(
        'predict.py', '--checkpoint', trained_checkpoint, '--wav',
        ten_minutes, '--top_k', 3, '--cpu_threads', 2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    scores = parse_blocks(proc.stdout)[str(ten_minutes)]
    assert sum(scores.values()) == pytest.approx(1, abs=1e-4)
    # Unwindowed, CNN6's first block alone would hold 64 x 60000 x 64
    # floats (983 MB), and 120 s windows peaked 1.4 GB above 10 s ones;
    # the margin absorbs allocator noise (up to ~100 MB seen under load).
    assert peak - dynamic_run[1] < 200e6, (peak, dynamic_run[1])


def test_windows_are_batched_and_weighted(tmp_path):
    """25 s -> windows of 10, 10 and 5 s, averaged weighted by length."""
    feature = FeatureConfig()
    sf.write(tmp_path / 'a.wav', tone(25, 32000), 32000, subtype='FLOAT')
    sf.write(tmp_path / 'b.wav', tone(3, 32000), 32000, subtype='FLOAT')
    lengths = []

    def score(waves):
        lengths.append([len(w) for w in waves])
        return np.array([[len(w) / 32000, 1.0] for w in waves])

    results = list(prediction.predict_files(
        [tmp_path / 'a.wav', tmp_path / 'missing.wav', tmp_path / 'b.wav'],
        feature, score, Windowing(10, pad=False), batch_size=2))
    assert [r[0].name for r in results] == ['a.wav', 'missing.wav', 'b.wav']
    assert max(n for batch in lengths for n in batch) == 10 * 32000
    assert results[0][1] == pytest.approx([(10 * 10 + 10 * 10 + 5 * 5) / 25,
                                           1.0])
    assert results[1][1] is None and 'no such file' in results[1][2]
    assert results[2][1] == pytest.approx([3.0, 1.0])


@pytest.fixture(scope='module')
def other_class_count(tmp_path_factory, trained_checkpoint):
    """A checkpoint whose metadata says 5 classes but whose head has 3."""
    state = paddle.load(str(trained_checkpoint))
    state['_meta'] = state['_meta'].replace('"num_class": 3',
                                            '"num_class": 5')
    path = tmp_path_factory.mktemp('bad_ckpt') / 'model.pdparams'
    paddle.save(state, str(path))
    return path


def user_error(capsys, main, *argv):
    """``runtime.run(main)``: exit status and stderr lines."""
    with pytest.raises(SystemExit) as exit_info:
        runtime.run(main, [str(a) for a in argv])
    return exit_info.value.code, capsys.readouterr().err.strip().splitlines()


def test_user_errors_are_one_line_unless_debug(capsys, tmp_path):
    """What every script's ``run(main)`` does with a user error."""
    def main(argv):
        load_classifier(tmp_path / 'none.pdparams')

    status, err = user_error(capsys, main)
    assert status == 2
    assert len(err) == 1 and err[0].startswith('error: checkpoint ') and \
        'not found' in err[0]
    status, err = user_error(capsys, main, '--debug')
    assert status == 2 and err[0].startswith('Traceback')


def test_swapped_checkpoint_and_export_say_which_script(capsys, tmp_path):
    """A checkpoint given as an export and an export given as a
    checkpoint: one line naming the script (and flag) that takes it."""
    from paddlespeech.cls.artifact import read_export
    ckpt_dir, export_dir = tmp_path / 'checkpoint', tmp_path / 'export'
    (ckpt_dir / 'best').mkdir(parents=True)
    (ckpt_dir / 'best' / 'model.pdparams').write_bytes(b'')
    export_dir.mkdir()
    for name in ('inference.json', 'inference.pdiparams', 'model.json'):
        (export_dir / name).write_text('{}')
    best = ckpt_dir / 'best' / 'model.pdparams'
    for given in (ckpt_dir, ckpt_dir / 'best', best):
        status, err = user_error(capsys, lambda argv: read_export(given))
        assert status == 2 and err == [
            f'error: {given} is a training checkpoint, not an export: export '
            f'it with export_model.py --checkpoint {best} --output_dir <new '
            f'dir> and pass that dir, or predict with predict.py '
            f'--checkpoint {best}']
    for given in (export_dir, export_dir / 'inference.pdiparams'):
        status, err = user_error(capsys, lambda argv: load_classifier(given))
        assert status == 2 and err == [
            f'error: {export_dir} is an export, not a training checkpoint: '
            f'classify with deploy/predict.py --model_dir {export_dir} '
            f'(predict.py --checkpoint takes train.py\'s <checkpoint_dir>/'
            f'best/model.pdparams)']


@pytest.mark.parametrize('script,args,reason', [
    ('predict', ['--checkpoint', '{tmp}/none.pdparams'], 'not found'),
    ('predict', ['--checkpoint', '{ckpt}', '--backbone', 'cnn10'],
     'holds a cnn6 model, not cnn10'),
    ('predict', ['--checkpoint', '{bad_ckpt}'],
     'tensor fc.weight has shape [512, 3], expected [512, 5]'),
    ('predict', ['--checkpoint', '{ckpt}', '--device', 'tpu'],
     "unknown device 'tpu'"),
    ('predict', ['--checkpoint', '{ckpt}', '--device', 'gpu'],
     'has no usable GPU'),
    ('predict', ['--checkpoint', '{ckpt}', '--top_k', '0'],
     '--top_k must be at least 1'),
    ('predict', ['--checkpoint', '{ckpt}', '--window_seconds', '0'],
     '--window_seconds must be positive'),
    ('predict', ['--checkpoint', '{tmp}'],
     'is an export, not a training checkpoint: classify with deploy/'),
    ('deploy', ['--model_dir', '{tmp}'], 'is incomplete: missing'),
    ('deploy', ['--model_dir', '{ckpt_dir}'],
     'is a training checkpoint, not an export: export it with '),
    ('deploy', ['--model_dir', '{tmp}', '--device', 'gpu:0'],
     'has no usable GPU'),
])
@pytest.mark.slow
def test_argument_errors(tmp_path, trained_checkpoint, other_class_count,
                         corpus, script, args, reason):
    assert not paddle.device.is_compiled_with_cuda()  # a CPU-only install
    (tmp_path / 'inference.json').write_text('{}')  # export lacks the rest
    fill = dict(tmp=tmp_path, ckpt=trained_checkpoint,
                ckpt_dir=trained_checkpoint.parents[1],
                bad_ckpt=other_class_count)
    argv = [a.format(**fill) for a in args] + ['--wav', corpus[0][0]]
    proc = run_script({'predict': 'predict.py',
                       'deploy': 'deploy/predict.py'}[script], *argv,
                      check=False)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(err) == 1 and err[0].startswith('error: ') and reason in err[0]


def test_no_eval_of_command_line_values():
    """Neither ``eval(...)`` nor ``type=eval`` anywhere in the code."""
    offenders = []
    for path in [*(ROOT / 'paddlespeech').rglob('*.py'),
                 *(ROOT / 'local').glob('*.py')]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Name) and node.id in ('eval', 'exec'):
                offenders.append(f'{path}:{node.lineno}')
    assert offenders == []


@pytest.fixture()
def damaged_dataset(tiny_dataset, tmp_path):
    """The tiny dataset with one text file, one empty wav and one missing."""
    root = tmp_path / 'damaged'
    shutil.copytree(tiny_dataset, root)
    with open(root / 'meta' / 'esc50.csv', newline='') as f:
        names = [r['filename'] for r in csv.DictReader(f)]
    (root / 'audio' / names[0]).write_text('not audio')
    sf.write(root / 'audio' / names[7], np.zeros(0), 44100)
    (root / 'audio' / names[-1]).unlink()
    return root, [root / 'audio' / names[i] for i in (0, 7, -1)]


@pytest.mark.slow
def test_training_lists_all_unreadable_files(damaged_dataset, tmp_path):
    root, bad = damaged_dataset
    proc = run_script('train.py', *train_args(root, tmp_path / 'ckpt',
                                              '--epochs', 1), check=False)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    assert '3 unreadable audio file(s)' in proc.stderr
    for path, reason in zip(bad, ['Format not recognised',
                                  'contains no samples', 'no such file']):
        assert f'  {path}: ' in proc.stderr and reason in proc.stderr
    assert not (tmp_path / 'ckpt').exists()

    proc = run_script('train.py', *train_args(
        root, tmp_path / 'ckpt', '--epochs', 1, '--skip_bad_files'))
    assert 'skipping 3 unreadable audio file(s)' in proc.stderr
    assert all(str(path) in proc.stderr for path in bad)
    assert (tmp_path / 'ckpt' / 'epoch_1' / 'model.pdparams').is_file()


# Runs train.py with a fault set in after the start-up scan of the clips
# passed: 'nan' rewrites the first training clip with NaN samples, 'raise'
# makes loading it raise a ValueError, 'die' ends the loader worker that
# loads it (os._exit).
FAULT_AFTER_SCAN = '''
import os, runpy, sys
import numpy as np, soundfile as sf
from paddlespeech.cls.datasets import loaders
from paddlespeech.cls.datasets import ClipDataset

fault, script = sys.argv[1], sys.argv[2]
check = loaders.check_readable


def check_then_break(datasets, *args, **kw):
    check(datasets, *args, **kw)
    path = datasets[0].items[0][0]
    print('broken after the scan:', path, file=sys.stderr, flush=True)
    if fault == 'nan':
        sf.write(path, np.full(8000, np.nan, np.float32), 16000,
                 subtype='FLOAT')
        return
    get = ClipDataset.__getitem__

    def broken(self, idx):
        if self.items[idx[0] if isinstance(idx, tuple) else idx][0] == path:
            if fault == 'die':
                os._exit(3)
            raise ValueError('item broke')
        return get(self, idx)
    ClipDataset.__getitem__ = broken


loaders.check_readable = check_then_break
sys.argv = [script] + sys.argv[3:]
runpy.run_path(script, run_name='__main__')
'''


@pytest.mark.parametrize('fault,workers,backend,reason', [
    # the loader thread of num_workers=0 (this hung for ever)
    ('nan', 0, 'numpy', 'contains NaN or infinite samples'),
    ('raise', 0, 'paddle', 'ValueError: item broke'),
    # a worker process (this ended in a SystemError traceback)
    ('nan', 1, 'paddle', 'contains NaN or infinite samples'),
    ('raise', 1, 'paddle', 'ValueError: item broke'),
    # Paddle reports a dead worker in one of two ways, whichever comes first
    ('die', 1, 'paddle', 'exited unexpectedly with code 3|Blocking queue is '
     'killed'),
])
def test_a_clip_failing_in_the_loader_ends_the_run_in_one_line(
        fault, workers, backend, reason, tmp_path):
    data = make_synthetic(tmp_path / 'data', layout='folder', classes=3,
                          clips_per_fold=2, folds=5, seconds=0.5)
    script = tmp_path / 'fault.py'
    script.write_text(FAULT_AFTER_SCAN)
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(script), fault, str(SCRIPTS / 'train.py'),
         *map(str, train_args(data, tmp_path / 'ckpt', '--epochs', 2,
                              '--num_workers', workers, '--feat_backend',
                              backend))],
        capture_output=True, text=True, env=script_env(), timeout=180)
    assert time.monotonic() - start < 180
    broken = re.search(r'broken after the scan: (\S+)', proc.stderr)
    assert broken, proc.stderr[-3000:]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines()
              if line.startswith('error: ')]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert re.search(reason, errors[0]), errors[0]
    if fault != 'die':  # a dead worker's message cannot know the file
        assert broken.group(1) in errors[0]
    assert proc.stderr.rstrip().endswith(errors[0])
    assert not (tmp_path / 'ckpt' / 'epoch_1').exists()
