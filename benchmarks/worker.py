"""One benchmark measurement per process: ``worker.py TASK JSON_ARGS``.

Prints progress on stderr and one JSON object as the last line of stdout.
Tasks whose name starts with ``torch_`` import torch (and never Paddle);
the others import Paddle (and never torch), after the recipe's process
preparation, as its scripts make it.
"""
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

from paddlespeech.cls.runtime import prepare_process

if not sys.argv[1:2] or not sys.argv[1].startswith('torch_'):
    prepare_process()

import numpy as np

from benchmarks.common import (THREADS, current_rss_mb, peak_rss_mb, timeit,
                               waves)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# --------------------------------------------------------------- paddle side

def _paddle(threads=THREADS):
    import paddle
    paddle.set_device('cpu')
    paddle.base.core.set_num_threads(threads)
    return paddle


def export_random(arch, out_dir, include_frontend=False, num_class=50):
    """A random-weight classifier checkpoint (as train.py writes it),
    exported with paddlespeech.cls.export; returns (checkpoint, export_dir)."""
    paddle = _paddle()
    from paddlespeech.cls.checkpoint import model_meta, save_checkpoint
    from paddlespeech.cls.export import export
    from paddlespeech.cls.features import FeatureConfig
    from paddlespeech.cls.models import build_classifier
    from paddlespeech.cls.task import Task
    out_dir = Path(out_dir)
    ckpt = out_dir / f'ckpt_{arch}' / 'epoch_1' / 'model.pdparams'
    if not ckpt.is_file():
        paddle.seed(0)
        model = build_classifier(arch, num_class, 0.1)
        labels = [f'class_{i}' for i in range(num_class)]
        meta = model_meta(arch, labels, 0.1, FeatureConfig(), Task())
        save_checkpoint(out_dir / f'ckpt_{arch}', 1, model, meta)
    exp = out_dir / (f'export_{arch}' + ('_wave' if include_frontend else ''))
    if not (exp / 'model.json').is_file():
        export(ckpt, exp, include_frontend)
    return ckpt, exp


def task_export(a):
    ckpt, exp = export_random(a['arch'], a['out_dir'],
                              a.get('include_frontend', False))
    return {'checkpoint': str(ckpt), 'export_dir': str(exp)}


def _rates(fn_by_batch, batches, seconds, warmup, reps):
    """{batch: clips/s} and batch-1 latency in ms."""
    out = {}
    for b in batches:
        r = reps if b > 1 else max(reps, 2 * reps)
        t = timeit(fn_by_batch(b), warmup, r)
        out[b] = {'clips_per_s': b / t, 'latency_ms': 1000 * t}
    return out


def task_infer_paddle(a):
    """Deploy Predictor (oneDNN on/off) and dynamic graph, with and
    without the front end, for one architecture."""
    paddle = _paddle(a.get('threads', THREADS))
    from paddlespeech.cls.inference import Predictor
    from paddlespeech.cls.models import load_classifier
    from paddlespeech.cls.features import FeatureConfig, NumpyLogMel, \
        paddle_logmel
    arch, seconds = a['arch'], a['seconds']
    batches, warmup, reps = a['batches'], a['warmup'], a['reps']
    ckpt, exp = export_random(arch, a['out_dir'])
    feature = FeatureConfig()
    numpy_fe = NumpyLogMel(feature)
    W = {b: list(waves(b, seconds, seed=b)) for b in batches}
    F = {b: np.stack([numpy_fe(w) for w in W[b]]) for b in batches}
    res = {}
    modes = a.get('modes', ['deploy_onednn', 'deploy_plain', 'dygraph'])
    for mode in modes:
        if mode.startswith('deploy'):
            t = time.perf_counter()
            pred = Predictor(str(exp), 'cpu', a.get('threads', THREADS),
                             enable_mkldnn=mode == 'deploy_onednn')
            create_s = time.perf_counter() - t

            def net(b, pred=pred):
                x = F[b]

                return lambda: pred.runner(x)
            e2e = _rates(lambda b, pred=pred: (lambda: pred(W[b])), batches,
                         seconds, warmup, reps)
            netr = _rates(net, batches, seconds, warmup, reps)
            res[mode] = {'create_s': create_s, 'e2e': e2e, 'net': netr}
            del pred
        elif mode == 'dygraph':
            model, _, _ = load_classifier(ckpt)
            fe = paddle_logmel(feature)

            def dnet(b):
                x = paddle.to_tensor(F[b])

                def run():
                    with paddle.no_grad():
                        return model(x).numpy()
                return run

            def de2e(b):  # as predict.py scores (numpy front end, softmax)
                def run():
                    with paddle.no_grad():
                        x = paddle.to_tensor(np.stack(
                            [numpy_fe(w) for w in W[b]]))
                        return paddle.nn.functional.softmax(
                            model(x), -1).numpy()
                return run

            def de2e_paddle_fe(b):  # predict.py --feat_backend paddle
                def run():
                    with paddle.no_grad():
                        x = fe(paddle.to_tensor(np.stack(W[b])))
                        return paddle.nn.functional.softmax(
                            model(x), -1).numpy()
                return run
            res['dygraph'] = {
                'e2e': _rates(de2e, batches, seconds, warmup, reps),
                'net': _rates(dnet, batches, seconds, warmup, reps)}
            if a.get('paddle_frontend_row'):
                res['dygraph_paddle_fe'] = {'e2e': _rates(
                    de2e_paddle_fe, batches, seconds, warmup, reps)}
        elif mode == 'deploy_onednn_wave':
            # lever: front end inside the exported graph (--include_frontend)
            _, expw = export_random(arch, a['out_dir'], include_frontend=True)
            t = time.perf_counter()
            pred = Predictor(str(expw), 'cpu', a.get('threads', THREADS), True)
            create_s = time.perf_counter() - t
            res[mode] = {'create_s': create_s, 'e2e': _rates(
                lambda b, pred=pred: (lambda: pred(W[b])), batches, seconds,
                warmup, reps)}
            del pred
    return res


def task_frontend_paddle(a):
    paddle = _paddle()
    from paddlespeech.cls.features import FeatureConfig, NumpyLogMel, \
        paddle_logmel
    n, b, seconds = a['clips'], a['batch'], a['seconds']
    W = waves(n, seconds)
    numpy_fe = NumpyLogMel(FeatureConfig())
    fe = paddle_logmel(FeatureConfig())
    t_np = timeit(lambda: [numpy_fe(w) for w in W], 1, a['reps'])
    batches = [paddle.to_tensor(W[i:i + b]) for i in range(0, n, b)]

    def run_paddle():
        with paddle.no_grad():
            for x in batches:
                fe(x).numpy()
    t_pd = timeit(run_paddle, 1, a['reps'])
    if a.get('save'):  # [clips, frames, n_mels] log-mel of each front end
        with paddle.no_grad():
            np.savez(a['save'], waves=W,
                     numpy=np.stack([numpy_fe(w) for w in W]),
                     paddle=np.concatenate([fe(x).numpy() for x in batches]))
    return {'numpy': n / t_np, 'paddle_batched': n / t_pd}


def task_peak(a):
    """Float32 matmul peak: numpy SGEMM and paddle.matmul, n x n."""
    paddle = _paddle()
    n, reps = a['n'], a['reps']
    rng = np.random.default_rng(0)
    A = rng.standard_normal((n, n), dtype=np.float32)
    B = rng.standard_normal((n, n), dtype=np.float32)
    flops = 2.0 * n ** 3
    t_np = timeit(lambda: A @ B, 1, reps)
    pa, pb = paddle.to_tensor(A), paddle.to_tensor(B)
    t_pd = timeit(lambda: paddle.matmul(pa, pb).numpy(), 1, reps)
    # the kernels the deploy path uses: a bias-free Linear exported and run
    # through paddle.inference with oneDNN (AVX-512 where the CPU has it;
    # MKL_DEBUG_CPU_TYPE=5 keeps paddle.matmul's MKL on its AVX2 path)
    onednn = None
    try:
        from paddle import inference
        from paddle.static import InputSpec
        with tempfile.TemporaryDirectory() as tmp:
            lin = paddle.nn.Linear(n, n, bias_attr=False)
            lin.eval()
            static = paddle.jit.to_static(
                lin, input_spec=[InputSpec([None, n], 'float32', 'x')],
                full_graph=True)
            paddle.jit.save(static, f'{tmp}/mm')
            cfg = inference.Config(f'{tmp}/mm.json', f'{tmp}/mm.pdiparams')
            cfg.disable_gpu()
            cfg.set_cpu_math_library_num_threads(THREADS)
            cfg.enable_mkldnn()
            cfg.disable_glog_info()
            pred = inference.create_predictor(cfg)
            inp = pred.get_input_handle(pred.get_input_names()[0])
            out = pred.get_output_handle(pred.get_output_names()[0])

            def run():
                inp.reshape(A.shape)
                inp.copy_from_cpu(A)
                pred.run()
                return out.copy_to_cpu()
            onednn = flops / timeit(run, 1, reps) / 1e9
    except Exception as e:  # report the others even if this fails
        log(f'oneDNN matmul peak failed: {e!r}')
    try:
        from threadpoolctl import threadpool_info
        blas = [(i['internal_api'], i['num_threads']) for i in
                threadpool_info() if i['user_api'] == 'blas']
    except Exception:
        blas = []
    return {'numpy_gflops': flops / t_np / 1e9,
            'paddle_gflops': flops / t_pd / 1e9, 'n': n,
            'onednn_gflops': onednn,
            'numpy_blas': blas}


def task_train_paddle(a):
    """Forward + backward + Adam step on log-mel batches, as train.py does
    with the (cached) numpy front end; peak RSS of this process.

    ``lever``: ``threads1`` (one thread), ``onednn_flag``
    (``FLAGS_use_onednn``; Paddle 3.3's dynamic graph still picks its
    plain CPU kernels), ``to_static`` (forward compiled to a static graph).
    """
    lever = a.get('lever')
    paddle = _paddle(1 if lever == 'threads1' else THREADS)
    if lever == 'onednn_flag':
        paddle.set_flags({'FLAGS_use_onednn': True})
    from paddlespeech.cls.features import FeatureConfig, NumpyLogMel
    from paddlespeech.cls.models import build_classifier
    paddle.seed(0)
    b = a['batch']
    fe = NumpyLogMel(FeatureConfig())
    x = paddle.to_tensor(np.stack([fe(w) for w in waves(b, a['seconds'])]))
    y = paddle.to_tensor(np.arange(b, dtype=np.int64) % 50)
    model = build_classifier(a['arch'], 50, 0.1)
    model.train()
    opt = paddle.optimizer.Adam(learning_rate=5e-5,
                                parameters=model.parameters())
    crit = paddle.nn.CrossEntropyLoss()
    forward = (paddle.jit.to_static(model, full_graph=True)
               if lever == 'to_static' else model)

    def step():
        loss = crit(forward(x), y)
        loss.backward()
        opt.step()
        opt.clear_grad()
        float(loss)
    t = timeit(step, a['warmup'], a['reps'])
    return {'clips_per_s': b / t, 'step_s': t, 'peak_rss_mb': peak_rss_mb()}


def _conv_flops(a):
    """Forward, input-gradient and weight-gradient convolutions."""
    return 3 * 2 * a['batch'] * a['h'] * a['w'] * a['cin'] * a['cout'] * \
        a['k'] ** 2


def task_conv_paddle(a):
    """One 'same' convolution forward + backward in the dynamic graph."""
    paddle = _paddle()
    conv = paddle.nn.Conv2D(a['cin'], a['cout'], a['k'], padding=a['k'] // 2,
                            bias_attr=False)
    x = paddle.randn([a['batch'], a['cin'], a['h'], a['w']])
    x.stop_gradient = False

    def step():
        conv(x).sum().backward()
        float(x.grad.sum())
        conv.clear_gradients()
        x.clear_gradient()
    t = timeit(step, a['warmup'], a['reps'])
    return {'step_s': t, 'gflops': _conv_flops(a) / t / 1e9}


def task_epoch_cache(a):
    """Epoch 1 (decode + resample + NumpyLogMel per clip) against epoch 2
    (the dataset's in-memory feature cache): ``Trainer.train_epoch`` (what
    train.py runs) on a data set from ``datasets.synthetic.generate``."""
    _paddle()
    from paddlespeech.cls.config import load_config
    from paddlespeech.cls.datasets.synthetic import generate
    from paddlespeech.cls.features import NumpyLogMel
    from paddlespeech.cls.trainer import Trainer
    with tempfile.TemporaryDirectory() as tmp:
        root = generate(Path(tmp) / 'esc', classes=a['classes'],
                        clips_per_fold=a['clips_per_fold'], folds=5,
                        seconds=a['seconds'])
        cfg = load_config(None, {
            'data_dir': str(root), 'checkpoint_dir': str(Path(tmp) / 'ckpt'),
            'backbone': a['arch'], 'pretrained': False,
            'batch_size': a['batch'], 'learning_rate': 5e-5, 'epochs': 3,
            'log_freq': 10 ** 6, 'device': 'cpu', 'cpu_threads': THREADS})
        with contextlib.redirect_stdout(io.StringIO()):
            trainer = Trainer(cfg)
        ds, feature = trainer.train_set, cfg.feature
        times = []
        for epoch in (1, 2, 3):
            t = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                trainer.train_epoch(epoch)
            times.append(time.perf_counter() - t)
            log(f'epoch {epoch}: {times[-1]:.2f} s')
            if epoch == 2 and not a.get('third_epoch'):
                break
        # cost of what the cache saves, per clip: read + resample + log-mel
        fe = NumpyLogMel(feature)
        from paddlespeech.cls.audio import load_audio
        paths = [p for p, _ in ds.items]
        t = time.perf_counter()
        for p in paths:
            fe(load_audio(p, feature.sample_rate, feature.n_fft))
        feat_ms = 1000 * (time.perf_counter() - t) / len(paths)
    return {'clips': len(ds), 'epoch1_s': times[0], 'epoch2_s': times[1],
            'epoch3_s': times[2] if len(times) > 2 else None,
            'speedup': times[0] / times[1], 'features_ms_per_clip': feat_ms}


def task_rss_predictor(a):
    """RSS of deploy/predict.py's path (Predictor + predict_files) over
    files of varying length, measured after every clip. ``release``
    false turns off predict_files' heap limit (the lever's baseline)."""
    import soundfile as sf
    _paddle()
    from paddlespeech.cls import prediction
    from paddlespeech.cls.audio import Windowing
    from paddlespeech.cls.inference import Predictor
    _, exp = export_random(a['arch'], a['out_dir'])
    folder = Path(a['out_dir']) / f"rss_{a['clips']}_{a['min_s']}_{a['max_s']}"
    rng = np.random.default_rng(1)
    lengths = rng.uniform(a['min_s'], a['max_s'], a['clips'])
    if not folder.is_dir():
        tmp = folder.with_name(folder.name + '.tmp')
        tmp.mkdir(parents=True, exist_ok=True)
        for i, secs in enumerate(lengths):
            sf.write(tmp / f'clip_{i:04d}.wav', waves(1, secs, seed=i)[0],
                     32000, subtype='PCM_16')
        tmp.rename(folder)
    if not a.get('release', True):
        prediction.HeapLimit.check = lambda self: None
    rss0 = current_rss_mb()
    capacity = {'mkldnn_cache_capacity': a['cache_capacity']} \
        if a.get('cache_capacity') else {}
    pred = Predictor(str(exp), 'cpu', THREADS, True, **capacity)
    rss = []

    def score(batch):
        out = pred(batch)
        rss.append(current_rss_mb())
        if len(rss) % 100 == 0:
            log(f'{len(rss)} clips, rss {rss[-1]:.0f} MB')
        return out
    t = time.perf_counter()
    results = list(prediction.predict_files(
        sorted(folder.glob('*.wav')), pred.feature, score,
        Windowing.of_model(pred.clip_seconds), 1))
    elapsed = time.perf_counter() - t
    assert all(err is None for _, _, err in results)
    k = a['window']
    first, last = float(np.mean(rss[:k])), float(np.mean(rss[-k:]))
    return {'clips': len(rss), 'seconds_range': [a['min_s'], a['max_s']],
            'rss_before_mb': rss0, 'rss_first_mb': first,
            'rss_last_mb': last, 'growth_mb': last - first,
            'peak_rss_mb': peak_rss_mb(), 'clips_per_s': len(rss) / elapsed,
            'window': k, 'release': a.get('release', True),
            'cache_capacity': a.get('cache_capacity', 'default')}


def task_detect_data(a):
    """A synthetic recording of ``seconds`` at 44.1 kHz and, with
    ``window``, its windows (every ``hop``) as separate clips: what
    deploy/predict.py classifies in the detect section's comparison. The
    clips are the recording's own samples (no resampling), so both sides
    read the same audio."""
    import soundfile as sf
    from paddlespeech.cls.audio import read_windows
    from paddlespeech.cls.datasets.synthetic import long_recording
    out = Path(a['out_dir'])
    out.mkdir(parents=True, exist_ok=True)
    rec = out / f"detect_{a['seconds']:g}s.wav"
    if not rec.is_file():
        long_recording(rec, seconds=a['seconds'])
    res = {'recording': str(rec), 'seconds': sf.info(str(rec)).duration}
    if a.get('window'):
        folder = out / f"detect_clips_{a['seconds']:g}s_{a['window']:g}"
        if not folder.is_dir():
            tmp = folder.with_name(folder.name + '.tmp')
            tmp.mkdir()
            for k, w in enumerate(read_windows(rec, 44100, a['window'],
                                               hop_seconds=a['hop'])):
                sf.write(tmp / f'w{k:06d}.wav', w, 44100, subtype='PCM_16')
            tmp.rename(folder)
        res.update(clips_dir=str(folder),
                   clips=len(list(folder.glob('*.wav'))))
    return res


def task_listing(a):
    """``load_table`` (listing + stratified folds + writing the folds
    file) on a folder-per-class tree of ``files`` tiny files, two folder
    levels deep, then again (the rerun reads and checks the folds file)."""
    from paddlespeech.cls.config import load_config
    import logging
    from paddlespeech.cls.datasets import load_table
    from paddlespeech.cls.runtime import loggers_quieted
    root = Path(a['out_dir']) / f"listing_{a['files']}_{a['classes']}"
    if not root.is_dir():
        tmp = root.with_name(root.name + '.tmp')
        for i in range(a['files']):
            folder = tmp / f"class_{i % a['classes']:03d}" / f'take_{i % 7}'
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f'clip_{i:06d}.wav').write_bytes(b'RIFF')
        tmp.rename(root)
    (root / '.folds.csv').unlink(missing_ok=True)
    cfg = load_config(None, {'data_dir': str(root), 'num_folds': a['folds'],
                             'checkpoint_dir': str(root) + '_ckpt'})
    times = []
    for _ in range(2):
        t = time.perf_counter()
        with loggers_quieted({'paddlespeech.cls': logging.ERROR}):
            table = load_table(cfg.data, cfg.train)
        times.append(time.perf_counter() - t)
    log(f"{len(table.paths)} files: {times[0]:.2f} s, rerun {times[1]:.2f} s")
    return {'files': len(table.paths), 'generated': a['files'],
            'classes': len(table.label_list), 'folds': len(table.fold_ids),
            'first_s': times[0], 'rerun_s': times[1],
            'files_per_s': len(table.paths) / times[0],
            'fold_sizes': np.bincount(table.folds).tolist()[1:]}


# ---------------------------------------------- low precision and ONNX

LOWP_KINDS = ('paddle_fp32', 'onnx_fp32', 'paddle_int8', 'onnx_int8',
              'paddle_bf16')


def lowp_exports(arch, out_dir, seconds, calib_clips, kinds=LOWP_KINDS):
    """{kind: export dir} of a random-weight ``arch``: ONNX, INT8 by both
    routes (calibrated on ``calib_clips`` generated clips) and BF16,
    built with the library functions export_model.py uses."""
    _paddle()
    import shutil
    from paddlespeech.cls import quantize
    from paddlespeech.cls.artifact import ONNX_FILE, write_meta
    from paddlespeech.cls.export import write_export
    from paddlespeech.cls.features import FeatureConfig, NumpyLogMel
    ckpt, exp = export_random(arch, out_dir)
    root = Path(out_dir) / f'lowp_{arch}'
    dirs = {k: root / k for k in kinds}
    if 'paddle_fp32' in dirs:
        dirs['paddle_fp32'] = exp
    fe = NumpyLogMel(FeatureConfig())
    calib = [fe(w)[None] for w in waves(calib_clips, seconds, seed=100)]
    for kind, d in dirs.items():
        if (d / 'model.json').is_file():
            continue
        tmp = d.with_name(d.name + '.tmp')
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        fmt, precision = kind.split('_')
        t = time.perf_counter()
        if kind == 'paddle_int8':
            old = root / 'fp32_pdmodel'
            old.mkdir(exist_ok=True)
            meta = write_export(old, ckpt, old_ir=True)
            quantize.paddle_int8(old, tmp, calib)
        elif kind == 'onnx_int8':
            meta = write_export(tmp, ckpt, format='onnx')
            quantize.onnx_int8(tmp / ONNX_FILE, tmp / ONNX_FILE, calib)
        else:
            meta = write_export(tmp, ckpt, format=fmt)
        meta.precision = precision
        write_meta(tmp, meta)
        log(f'{arch} {kind}: built in {time.perf_counter() - t:.1f} s')
        tmp.rename(d)
    return {k: str(d) for k, d in dirs.items()}


def task_lowp_build(a):
    return lowp_exports(a['arch'], a['out_dir'], a['seconds'],
                        a['calib_clips'], a.get('kinds', LOWP_KINDS))


def task_lowp_infer(a):
    """One export kind (its own process): Predictor creation, clips/s of
    ``Predictor.__call__`` (front end included) and of the graph alone."""
    _paddle()
    from paddlespeech.cls.features import FeatureConfig, NumpyLogMel
    from paddlespeech.cls.inference import Predictor
    b, seconds = a['batch'], a['seconds']
    W = list(waves(b, seconds, seed=b))
    x = np.stack([NumpyLogMel(FeatureConfig())(w) for w in W])
    t = time.perf_counter()
    pred = Predictor(a['model_dir'], 'cpu', THREADS)
    create_s = time.perf_counter() - t
    e2e = b / timeit(lambda: pred(W), a['warmup'], a['reps'])
    net = b / timeit(lambda: pred.runner(x), a['warmup'], a['reps'])
    return {'create_s': create_s, 'e2e_clips_per_s': e2e,
            'net_clips_per_s': net, 'backend': pred.backend,
            'precision': pred.precision}


def task_lowp_accuracy(a):
    """INT8 (both routes) and BF16 exports of a trained model through
    quantize.export_low_precision as export_model.py runs it (calibration
    on the training folds, the check on the dev fold), then fp32 against
    each on a held-out set generated with another seed (clips neither
    trained nor calibrated on): accuracy and top-1 agreement."""
    _paddle()
    from paddlespeech.cls import quantize, runtime
    from paddlespeech.cls.audio import load_audio
    from paddlespeech.cls.config import load_config
    from paddlespeech.cls.datasets import load_table
    from paddlespeech.cls.datasets.synthetic import generate
    from paddlespeech.cls.export import export
    from paddlespeech.cls.inference import Predictor
    out = Path(a['out_dir']) / 'lowp_accuracy'
    cfg = load_config(None, {'data_dir': a['data_dir'], 'split': a['split']})
    calib = quantize.calibration_set(cfg.data, cfg.train, None,
                                     a['calib_clips'])
    check = quantize.check_set(cfg.data, cfg.train)
    export(a['checkpoint'], out / 'fp32')
    held = generate(out / 'heldout', seed=a['heldout_seed'],
                    **a['heldout'])
    held_cfg = load_config(None, {'data_dir': str(held)})
    table = load_table(held_cfg.data, held_cfg.train)
    labels = np.array([t[0] for t in table.targets])
    sr = Predictor(str(out / 'fp32'), 'cpu', THREADS).feature.sample_rate
    clips = [load_audio(p, sr) for p in table.paths]

    def scores(folder):
        pred = Predictor(str(folder), 'cpu', THREADS)
        return np.concatenate([pred(clips[i:i + 8])
                               for i in range(0, len(clips), 8)])
    ref = scores(out / 'fp32')
    res = {'heldout_clips': len(clips), 'dev_clips': len(check.paths),
           'calib_clips': len(calib.paths),
           'heldout_fp32_acc': 100 * float(np.mean(ref.argmax(1) == labels))}
    kinds = [('paddle', 'int8'), ('onnx', 'int8')]
    if set(runtime.BF16_FLAGS) & runtime.cpu_flags():
        kinds.append(('paddle', 'bf16'))
    for fmt, precision in kinds:
        name = f'{fmt}_{precision}'
        t = time.perf_counter()
        dev = quantize.export_low_precision(
            a['checkpoint'], out / name, precision, calib, check,
            format=fmt, force=True)
        build_s = time.perf_counter() - t
        low = scores(out / name)
        res[name] = {
            'dev': dev, 'export_s': build_s,
            'heldout_acc': 100 * float(np.mean(low.argmax(1) == labels)),
            'heldout_agreement': 100 * float(np.mean(
                low.argmax(1) == ref.argmax(1)))}
    return res


# ---------------------------------------------------------------- torch side

def _torch(threads=THREADS):
    import torch
    torch.set_num_threads(threads)
    from tests import panns_reference
    panns_reference.import_panns_inference()
    return torch, panns_reference


def task_torch_infer(a):
    torch, ref = _torch(a.get('threads', THREADS))
    arch, seconds = a['arch'], a['seconds']
    batches, warmup, reps = a['batches'], a['warmup'], a['reps']
    model = ref.make_reference(arch)
    W = {b: torch.from_numpy(waves(b, seconds, seed=b)) for b in batches}
    with torch.inference_mode():
        F = {b: ref._front_end()(W[b]).contiguous() for b in batches}

    def e2e(b):
        def run():
            with torch.inference_mode():
                return model(W[b])['clipwise_output'].numpy()
        return run
    res = {'e2e': _rates(e2e, batches, seconds, warmup, reps)}
    # network only: the same model with the torchlibrosa front end removed
    model.spectrogram_extractor = torch.nn.Identity()
    model.logmel_extractor = torch.nn.Identity()

    def net(b):
        def run():
            with torch.inference_mode():
                return model(F[b])['clipwise_output'].numpy()
        return run
    res['net'] = _rates(net, batches, seconds, warmup, reps)
    return res


def task_torch_frontend(a):
    torch, ref = _torch()
    import librosa
    n, b, seconds = a['clips'], a['batch'], a['seconds']
    W = waves(n, seconds)

    def lib():
        out = []
        for w in W:
            S = librosa.feature.melspectrogram(
                y=w, sr=32000, n_fft=1024, hop_length=320, win_length=1024,
                window='hann', center=True, pad_mode='reflect', power=2.0,
                n_mels=64, fmin=50, fmax=14000, htk=False, norm='slaney')
            out.append(librosa.power_to_db(S, ref=1.0, amin=1e-10,
                                           top_db=None).T)
        return out
    fe = ref._front_end()
    batches = [torch.from_numpy(W[i:i + b]) for i in range(0, n, b)]

    def tl():
        with torch.inference_mode():
            return [fe(x).numpy()[:, 0] for x in batches]
    res = {'librosa': n / timeit(lib, 1, a['reps']),
           'torchlibrosa_batched': n / timeit(tl, 1, a['reps'])}
    if a.get('save'):  # [clips, frames, n_mels] log-mel of each front end
        np.savez(a['save'], waves=W, librosa=np.stack(lib()),
                 torchlibrosa=np.concatenate(tl()))
    return res


def task_torch_train(a):
    """The reference network (front end and SpecAugment removed, log-mel
    input like ours) plus a num_class head on the embedding; CE + Adam."""
    torch, ref = _torch()
    torch.manual_seed(0)
    b = a['batch']
    model = ref.build_reference(a['arch'])
    with torch.inference_mode():
        x = ref._front_end()(torch.from_numpy(waves(b, a['seconds'])))
    x = x.clone()
    model.spectrogram_extractor = torch.nn.Identity()
    model.logmel_extractor = torch.nn.Identity()
    model.spec_augmenter = torch.nn.Identity()
    emb = model.fc1.out_features
    head = torch.nn.Sequential(torch.nn.Dropout(0.1),
                               torch.nn.Linear(emb, 50))
    model.train()
    head.train()
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=5e-5)
    y = torch.arange(b) % 50
    crit = torch.nn.CrossEntropyLoss()

    def step():
        loss = crit(head(model(x)['embedding']), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        float(loss)
    t = timeit(step, a['warmup'], a['reps'])
    return {'clips_per_s': b / t, 'step_s': t, 'peak_rss_mb': peak_rss_mb()}


def task_torch_conv(a):
    """task_conv_paddle's convolution in PyTorch."""
    torch, _ = _torch()
    conv = torch.nn.Conv2d(a['cin'], a['cout'], a['k'], padding=a['k'] // 2,
                           bias=False)
    x = torch.randn(a['batch'], a['cin'], a['h'], a['w'], requires_grad=True)

    def step():
        conv(x).sum().backward()
        float(x.grad.sum())
        conv.zero_grad()
        x.grad = None
    t = timeit(step, a['warmup'], a['reps'])
    return {'step_s': t, 'gflops': _conv_flops(a) / t / 1e9}


def main():
    task, args = sys.argv[1], json.loads(sys.argv[2])
    result = globals()[f'task_{task}'](args)
    sys.stdout.flush()
    print('\n' + json.dumps(result), flush=True)


if __name__ == '__main__':
    main()
