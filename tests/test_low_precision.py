"""ONNX export with ONNX Runtime, INT8 (Paddle PTQ + oneDNN, ONNX Runtime
QDQ) and BF16 exports: scores against paddle.inference, the calibration
set, the accuracy guard, deploy/predict.py on every export kind, and the
optional extra staying optional."""
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import ROOT, SCRIPTS, run_script, script_env
from paddlespeech.cls import quantize, runtime
from paddlespeech.cls.audio import Windowing
from paddlespeech.cls.checkpoint import model_meta, save_checkpoint
from paddlespeech.cls.config import load_config
from paddlespeech.cls.errors import UserError
from paddlespeech.cls.export import export
from paddlespeech.cls.features import FeatureConfig
from paddlespeech.cls.inference import Predictor
from paddlespeech.cls.prediction import predict_files
from paddlespeech.cls.task import Task
from tests.test_bad_inputs import check_corpus_run, corpus  # noqa: F401 (fixture)

pytest.importorskip('onnxruntime')


def waves(n, seconds=1.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 32000)) / 32000
    return [(0.2 * np.sin(2 * np.pi * rng.uniform(100, 4000) * t)
             + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
            for _ in range(n)]


@pytest.fixture(scope='session')
def random_checkpoint(tmp_path_factory):
    """``arch -> checkpoint`` of a random-weight 10-class classifier."""
    import paddle
    from paddlespeech.cls.models import build_classifier
    made = {}

    def get(arch):
        if arch not in made:
            paddle.seed(0)
            folder = tmp_path_factory.mktemp(f'random_{arch}')
            model = build_classifier(arch, 10, 0.1)
            meta = model_meta(arch, [f'c{i}' for i in range(10)], 0.1,
                              FeatureConfig(), Task())
            save_checkpoint(folder, 1, model, meta)
            made[arch] = folder / 'epoch_1' / 'model.pdparams'
        return made[arch]
    return get


def onnx_against_paddle(checkpoint, tmp_path, clips, onednn=True):
    """Scores of the ONNX export (ONNX Runtime) and of the Paddle export
    (paddle.inference) of ``checkpoint`` on the same clips."""
    export(checkpoint, tmp_path / 'paddle')
    export(checkpoint, tmp_path / 'onnx', format='onnx')
    assert sorted(p.name for p in (tmp_path / 'onnx').iterdir()) == [
        'model.json', 'model.onnx']
    onnx = Predictor(str(tmp_path / 'onnx'), 'cpu', 2)
    paddle_ = Predictor(str(tmp_path / 'paddle'), 'cpu', 2, onednn)
    assert (onnx.backend, paddle_.backend) == ('onnxruntime', 'paddle')
    assert onnx.labels == paddle_.labels and onnx.task == paddle_.task
    return onnx(clips), paddle_(clips)


def test_onnx_equals_paddle_inference_cnn6(random_checkpoint, tmp_path):
    a, b = onnx_against_paddle(random_checkpoint('cnn6'), tmp_path,
                               waves(3))
    assert a.shape == (3, 10)
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize('arch', ['cnn10', 'cnn14'])
def test_onnx_equals_paddle_inference(random_checkpoint, tmp_path, arch):
    # without oneDNN: its CNN14 predictor takes 6 s to create
    a, b = onnx_against_paddle(random_checkpoint(arch), tmp_path,
                               waves(2, seed=1), onednn=False)
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)


def test_bf16_refused_on_a_cpu_without_it(monkeypatch, trained_checkpoint,
                                          tmp_path):
    flags = runtime.cpu_flags()
    assert 'fpu' in flags or not flags  # the parser reads real flags
    monkeypatch.setattr(runtime, 'cpu_flags',
                        lambda: {'fpu', 'avx2', 'avx512f', 'avx512_vnni'})
    with pytest.raises(UserError, match='needs a CPU with AVX-512 BF16 or '
                       'AMX .* this one has neither'):
        quantize.export_low_precision(
            trained_checkpoint, tmp_path / 'out', 'bf16', None, None)
    assert not (tmp_path / 'out').exists()
    monkeypatch.setattr(runtime, 'cpu_flags', lambda: {'amx_bf16'})
    runtime.check_bf16()  # AMX alone is enough


def test_calibration_never_uses_the_dev_fold(tiny_dataset):
    cfg = load_config(None, {'data_dir': str(tiny_dataset), 'split': 2})
    calib = quantize.calibration_set(cfg.data, cfg.train, None, clips=100)
    # ESC-50 names start with the fold: 3 classes x 2 clips x 4 folds
    folds = [int(p.name.split('-')[0]) for p in calib.paths]
    assert len(calib.paths) == 24 and 2 not in folds
    assert calib.about['folds'] == [1, 3, 4, 5]
    # fewer clips: classes take turns (names end in -<class>.wav)
    few = quantize.calibration_set(cfg.data, cfg.train, None, clips=6)
    classes = sorted(int(p.stem.rsplit('-', 1)[1]) for p in few.paths)
    assert classes == [0, 0, 1, 1, 2, 2]
    check = quantize.check_set(cfg.data, cfg.train)
    assert sorted({int(p.name.split('-')[0]) for p in check.paths}) == [2]
    assert len(check.paths) == 6 and sorted(check.targets) == [0, 0, 1, 1,
                                                               2, 2]


@pytest.fixture(scope='module')
def exports(trained_checkpoint, tiny_dataset, tmp_path_factory):
    """Paddle fp32, ONNX fp32, Paddle INT8 (through export_model.py) and
    ONNX INT8 exports of the trained model."""
    out = tmp_path_factory.mktemp('exports')
    export(trained_checkpoint, out / 'paddle')
    export(trained_checkpoint, out / 'onnx', format='onnx')
    run = run_script('export_model.py', '--checkpoint', trained_checkpoint,
                     '--output_dir', out / 'paddle_int8', '--quantize',
                     'int8', '--data_dir', tiny_dataset, '--calib_clips', 12)
    assert 'top-1 agreement' in run.stderr
    cfg = load_config(None, {'data_dir': str(tiny_dataset)})
    quantize.export_low_precision(
        trained_checkpoint, out / 'onnx_int8', 'int8',
        quantize.calibration_set(cfg.data, cfg.train, None, 12),
        quantize.check_set(cfg.data, cfg.train),
        format='onnx')
    return out


@pytest.mark.slow
def test_int8_exports_keep_accuracy_and_record_it(exports, tiny_dataset):
    out = exports
    for fmt in ('paddle', 'onnx'):
        meta = json.loads((out / f'{fmt}_int8' / 'model.json').read_text())
        assert meta['precision'] == 'int8'
        assert meta['backend'] == {'paddle': 'paddle',
                                   'onnx': 'onnxruntime'}[fmt]
        assert meta['calibration']['folds'] == [2, 3, 4, 5]
        assert len(meta['calibration']['files']) == 12
        check = meta['accuracy_check']
        assert (check['fold'], check['clips'], check['metric']) == (1, 6,
                                                                    'acc')
        assert check['drop'] <= 1.0 and check['top1_agreement'] >= 98
        # the recorded figures are those of the two exports on fold 1
        clips = sorted((tiny_dataset / 'audio').glob('1-*.wav'))
        labels = np.array([int(p.stem.rsplit('-', 1)[1]) for p in clips])
        fp32 = Predictor(str(out / fmt), 'cpu', 2)
        low = Predictor(str(out / f'{fmt}_int8'), 'cpu', 2)
        assert low.precision == 'int8'
        from paddlespeech.cls.audio import load_audio
        x = [load_audio(p, 32000) for p in clips]
        a, b = fp32(x), low(x)
        assert check['fp32'] == pytest.approx(
            100 * np.mean(a.argmax(1) == labels))
        assert check['quantised'] == pytest.approx(
            100 * np.mean(b.argmax(1) == labels))
        assert np.abs(a - b).max() < 0.2  # close, not equal: 8-bit


@pytest.mark.slow
def test_guard_refuses_a_constant_calibration(trained_checkpoint,
                                              tiny_dataset, tmp_path):
    """Calibrated on silence, the ONNX Runtime route's activation
    ranges (min-max) fit nothing real: the export is refused with one line
    and nothing is written; --force writes it and records that it was
    forced."""
    silent = tmp_path / 'silence.wav'
    sf.write(silent, np.zeros(16000), 32000, subtype='PCM_16')
    listing = tmp_path / 'calib.txt'
    listing.write_text('silence.wav\n' * 4)
    args = ('export_model.py', '--checkpoint', trained_checkpoint,
            '--output_dir', tmp_path / 'out', '--quantize', 'int8',
            '--data_dir', tiny_dataset, '--calib_data', listing,
            '--format', 'onnx')
    proc = run_script(*args, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('error: int8 export refused: acc fell ')
    assert 'more than --max_drop 1' in last and '--force' in last
    assert 'Traceback' not in proc.stderr
    assert not (tmp_path / 'out').exists()
    cfg = load_config(None, {'data_dir': str(tiny_dataset)})
    quantize.export_low_precision(
        trained_checkpoint, tmp_path / 'out', 'int8',
        quantize.calibration_set(cfg.data, cfg.train, listing),
        quantize.check_set(cfg.data, cfg.train),
        format='onnx', force=True)  # export_model.py --force
    meta = json.loads((tmp_path / 'out' / 'model.json').read_text())
    assert meta['accuracy_check']['forced'] is True
    assert meta['accuracy_check']['drop'] > 1.0
    assert meta['calibration']['source'] == str(listing)


@pytest.mark.slow
def test_deploy_predict_on_onnx_and_int8_exports(exports,
                                                 corpus):  # noqa: F811
    """The same blocks and error lines as the paddle fp32 backend
    (tests/test_bad_inputs.py runs that one on this corpus); ONNX scores
    equal paddle.inference's."""
    good, bad = corpus
    out = exports
    blocks = {}
    for kind in ('onnx', 'paddle_int8', 'onnx_int8'):
        proc = run_script('deploy/predict.py', '--model_dir', out / kind,
                          '--wav', *bad, *good, '--top_k', 3,
                          '--batch_size', 4, '--cpu_threads', 2, check=False)
        blocks[kind] = check_corpus_run(proc, good, bad, num_class=3)
    fp32 = Predictor(str(out / 'paddle'), 'cpu', 2)
    windowing = Windowing.of_model(fp32.clip_seconds)
    for path, scores, _ in predict_files(good, fp32.feature, fp32, windowing,
                                         4):
        onnx = blocks['onnx'][str(path)]
        top = np.argsort(-scores, kind='stable')[:3]
        assert list(onnx) == [fp32.labels[i] for i in top]
        np.testing.assert_allclose(list(onnx.values()), scores[top],
                                   atol=1e-4)
    with pytest.raises(UserError) as e:
        Predictor(str(out / 'onnx'), backend='paddle')
    assert str(e.value) == (
        f'{out / "onnx"} holds a onnxruntime export, not one for --backend '
        f'paddle: export it with --format paddle (or leave --backend out)')


def test_default_path_needs_no_onnx_and_onnx_names_the_extra(
        trained_checkpoint, tmp_path):
    """With onnx, onnxruntime and paddle2onnx made unimportable: the
    Paddle export and predictor work and import none of them; asking for
    ONNX gives one line naming requirements-onnx.txt."""
    code = f'''
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('onnx', 'onnxruntime', 'paddle2onnx'):
            raise ImportError(name)
sys.meta_path.insert(0, Block())
import numpy as np
from paddlespeech.cls.errors import UserError
from paddlespeech.cls.export import export
from paddlespeech.cls.inference import Predictor
from paddlespeech.cls.prediction import predict_files
from paddlespeech.cls import quantize, runtime
from paddlespeech.cls.audio import Windowing
export({str(trained_checkpoint)!r}, {str(tmp_path / 'p')!r})
predictor = Predictor({str(tmp_path / 'p')!r}, 'cpu', 1)
print(predictor([np.zeros(8000, 'f')]).shape)
print(sorted(m for m in sys.modules if m.split('.')[0] in
             ('onnx', 'onnxruntime', 'paddle2onnx')))
try:
    export({str(trained_checkpoint)!r}, {str(tmp_path / 'o')!r}, format='onnx')
except UserError as e:
    print(e)
'''
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True,
                          text=True, env=script_env(), cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-3:] == [
        '(1, 3)', '[]',
        'paddle2onnx is not installed: ONNX export and the onnxruntime '
        'backend need the optional extra (pip install -r '
        'requirements-onnx.txt)']
    assert not (tmp_path / 'o').exists()


def test_onnx_refuses_the_in_graph_front_end(trained_checkpoint, tmp_path):
    proc = run_script('export_model.py', '--checkpoint', trained_checkpoint,
                      '--output_dir', tmp_path / 'o', '--format', 'onnx',
                      '--include_frontend', check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith(
        'error: --format onnx exports log-mel input only: paddle2onnx 2.1 '
        'has no conversion for the front end\'s STFT')
    assert not (tmp_path / 'o').exists()


# ``python <script> <args>`` with the distributions that the requirement
# files in sys.argv[2] (comma-separated) do not bring hidden (declared.py);
# at exit it writes the imported modules, their owners and the hidden ones
# to the file sys.argv[1].
CLEAN_INSTALL = '''
import atexit, json, runpy, sys
from pathlib import Path
from tests import declared
record, files, script = sys.argv[1:4]
names = declared.declared_distributions(*map(Path, files.split(',')))
owners, hidden = declared.owners(), declared.hide_undeclared(names)
atexit.register(lambda: Path(record).write_text(json.dumps({
    'modules': sorted(m for m, v in sys.modules.items() if v is not None),
    'owners': owners, 'hidden': hidden, 'declared': sorted(names)})))
sys.argv = sys.argv[3:]
sys.path[0] = str(Path(script).parent)
runpy.run_path(script, run_name='__main__')
'''
REQUIREMENTS = (ROOT / 'requirements.txt', ROOT / 'requirements-onnx.txt')


@pytest.fixture(scope='module')
def int8_export(trained_checkpoint, tiny_dataset, tmp_path_factory):
    """``format -> (log, record)``: ``export_model.py --quantize int8`` run
    as after a clean install of requirements.txt + requirements-onnx.txt
    (other packages hidden); everything it wrote to stdout and stderr,
    redirected to one file as a log would be, and what it imported."""
    done = {}

    def get(fmt):
        if fmt not in done:
            tmp = tmp_path_factory.mktemp(f'int8_{fmt}')
            log, record = tmp / 'log.txt', tmp / 'modules.json'
            env = script_env()
            with open(log, 'w') as out:
                proc = subprocess.run(
                    [sys.executable, '-c', CLEAN_INSTALL, str(record),
                     ','.join(map(str, REQUIREMENTS)),
                     str(SCRIPTS / 'export_model.py'),
                     '--checkpoint', str(trained_checkpoint), '--output_dir',
                     str(tmp / 'out'), '--quantize', 'int8', '--format', fmt,
                     '--data_dir', str(tiny_dataset), '--calib_clips', '8'],
                    stdout=out, stderr=subprocess.STDOUT, env=env,
                    timeout=600)
            text = log.read_bytes().decode()  # '\r' kept as written
            assert proc.returncode == 0, text[-3000:]
            done[fmt] = text, json.loads(record.read_text())
        return done[fmt]
    return get


@pytest.mark.parametrize('fmt', ['paddle', 'onnx'])
def test_int8_export_log_holds_no_redraws_or_library_chatter(int8_export,
                                                             fmt):
    """Redirected, an INT8 export writes its two lines and nothing else:
    no progress-bar redraws ('\\r'), no ONNX Runtime "Removing
    initializer" warnings, no deprecation notices, no quantiser
    narration."""
    log, _ = int8_export(fmt)
    assert '\r' not in log
    for noise in ('Removing initializer', 'DeprecationWarning',
                  'deprecated', 'Run batch', 'INFO'):
        assert noise not in log, log[:3000]
    lines = log.splitlines()
    assert len(lines) == 2, log[:3000]
    assert lines[0].startswith('accuracy check on ')
    assert lines[1].startswith('exported ') and f'({fmt}, int8)' in lines[1]


@pytest.mark.parametrize('fmt', ['paddle', 'onnx'])
def test_int8_export_needs_only_declared_packages(int8_export, fmt):
    """With every package that requirements.txt + requirements-onnx.txt
    do not bring hidden, the INT8 export works (the fixture checks), and
    each module it imported is the standard library's, this project's or
    a declared distribution's. (onnxruntime's quantiser imports sympy,
    which onnxruntime declares only under an extra.)"""
    _, record = int8_export(fmt)
    declared = set(record['declared'])
    assert {'paddlepaddle', 'numpy'} <= declared
    assert {'torch', 'pytest'} & set(record['hidden'])  # test-only: hidden
    imported = {m.split('.')[0] for m in record['modules']}
    if fmt == 'onnx':
        assert {'onnxruntime', 'sympy'} <= imported
    undeclared = {
        name: record['owners'][name] for name in imported
        if name not in sys.stdlib_module_names and name != 'paddlespeech'
        and record['owners'].get(name)
        and not set(record['owners'][name]) & declared}
    assert undeclared == {}


def test_declared_distributions_follow_requirements_and_extras():
    from tests.declared import declared_distributions
    base = declared_distributions(ROOT / 'requirements.txt',
                                  ROOT / 'requirements-serve.txt')
    # matplotlib -> fonttools, whose sympy comes with its symfont extra only
    assert {'matplotlib', 'fonttools', 'httpx', 'anyio'} <= base
    assert not {'sympy', 'onnxruntime', 'torch', 'pygments'} & base
    with_onnx = declared_distributions(*REQUIREMENTS)
    assert {'onnxruntime', 'sympy', 'mpmath', 'flatbuffers'} <= with_onnx


def test_third_party_progress_bars_only_on_a_terminal():
    import io
    import types
    from paddlespeech.cls.runtime import progress_on_terminal_only
    from tqdm import tqdm

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    module = types.SimpleNamespace(tqdm=tqdm)
    with progress_on_terminal_only(module):
        for file in (io.StringIO(), Terminal()):
            with module.tqdm(total=3, file=file) as bar:
                bar.update(3)
            assert ('3/3' in file.getvalue()) == file.isatty()
    assert module.tqdm is tqdm
