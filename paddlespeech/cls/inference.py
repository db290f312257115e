"""The predictor of an exported model: the fast path of
``deploy/predict.py``, the benchmarks and any service built on it.

One :class:`Predictor` for every export kind; what runs the graph is a
small runner chosen from what the export directory holds (``model.json``
records ``backend`` and ``precision``): :class:`PaddleRunner`
(``paddle.inference``: fp32, oneDNN INT8 or BF16 on CPU, TensorRT on GPU)
or :class:`OnnxRunner` (ONNX Runtime on CPU: fp32 or INT8). The front end,
the label check and softmax-for-logits stay in the Predictor.
"""
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .artifact import BACKENDS, read_export
from .errors import UserError
from .runtime import check_bf16, stdout_silenced
from .scoring import ModelInputs, SoundModel, softmax


@dataclass
class DeployConfig:
    """The ``deploy:`` section: how an export runs (``deploy/predict.py``);
    ``--precision`` is ``trt_precision`` in flat files."""
    FLAT = {'precision': 'trt_precision'}
    enable_mkldnn: bool = True
    use_tensorrt: bool = False
    precision: str = 'fp32'  # TensorRT's
    backend: Optional[str] = None  # None: what the export holds


class Predictor(SoundModel):
    """A runner plus the export's metadata: the export as a
    :class:`..scoring.SoundModel`."""

    def __init__(self, model_dir, device='cpu', cpu_threads=None,
                 enable_mkldnn=True, use_tensorrt=False, precision='fp32',
                 mkldnn_cache_capacity=2, label_file=None, backend=None):
        """``precision``: TensorRT's, on GPU; the export's own precision
        (``model.json``) needs no flag. ``backend``: ``paddle`` or
        ``onnxruntime`` to insist on one (None: the export's).
        ``mkldnn_cache_capacity``: input shapes oneDNN keeps compiled
        kernels for. Each holds its own copy of reordered weights (about
        300 MB for CNN14): over 300 files of random length a CNN14
        predictor held 3.8 GB with 10 shapes and 1.3 GB with 2, and was
        faster (14.5 vs 12.3 clips/s), since every length was new anyway.
        Two cover a folder's full batches and its last, shorter one.
        ``label_file``: class names of an export without ``model.json``."""
        graph, params, meta = read_export(model_dir, label_file)
        self.model_dir, self.meta, self.source = model_dir, meta, str(
            model_dir)
        self.backend = meta.backend
        self.precision = meta.precision
        if backend not in (None, self.backend):
            raise UserError(
                f'{model_dir} holds a {self.backend} export, not one for '
                f'--backend {backend}: export it with --format '
                f'{BACKENDS[backend]} (or leave --backend out)')
        if self.backend == 'onnxruntime':
            if device.startswith('gpu') or use_tensorrt:
                raise UserError('the onnxruntime backend runs on CPU here: '
                                'pass --device cpu')
            self.runner = OnnxRunner(graph, cpu_threads)
        else:
            self.runner = PaddleRunner(
                graph, params, device, cpu_threads, enable_mkldnn,
                use_tensorrt, precision, mkldnn_cache_capacity,
                self.precision)
        self.prepare = ModelInputs(None if meta.takes_waveform else
                                   self.feature)

    def front_end(self):
        return self.prepare

    def _inputs(self, waves):
        return self.prepare(waves).inputs

    def scores(self, waves):
        """Scores ``[batch, num_class]`` of equal-length waveforms (or of
        their :class:`..scoring.Prepared` inputs)."""
        return self._scores(self.runner(self._inputs(waves)))

    def _scores(self, out):
        if out.shape[-1] != len(self.labels):
            raise UserError(f'{self.model_dir} gives {out.shape[-1]} scores '
                            f'per clip but names {len(self.labels)} classes: '
                            f'pass --label_file (one class name per line)')
        return softmax(out) if self.meta.logits else out

    def embeddings(self, waves):
        """The backbone's embeddings ``[batch, embedding_size]``: the
        graph's second output."""
        self._check_embedding()
        return self.runner(self._inputs(waves), output=1)

    def scores_and_embeddings(self, waves):
        """Both from one run of the graph."""
        self._check_embedding()
        out, embeddings = self.runner(self._inputs(waves), output=(0, 1))
        return self._scores(out), embeddings

    def _check_embedding(self):
        if not self.embedding_size:
            raise UserError(f'{self.model_dir} has no embedding output (an '
                            f'export of an earlier version, or upstream\'s): '
                            f'export the checkpoint again with '
                            f'export_model.py')


class PaddleRunner:
    """``paddle.inference`` on a Paddle graph: ``runner(x)`` is the graph's
    (first) output for the input batch ``x``. ``export_precision`` ``int8`` (a
    post-training quantised graph) and ``bf16`` run through oneDNN on
    CPU."""

    def __init__(self, graph, params, device='cpu', cpu_threads=None,
                 enable_mkldnn=True, use_tensorrt=False, precision='fp32',
                 mkldnn_cache_capacity=2, export_precision='fp32'):
        from paddle import inference
        config = inference.Config(str(graph), str(params))
        if device.startswith('gpu'):
            if export_precision != 'fp32':
                raise UserError(f'{graph.parent} is a CPU {export_precision} '
                                f'export (oneDNN): pass --device cpu, or '
                                f'export fp32 for the GPU')
            gpu_id = int(device.partition(':')[2] or 0)
            config.enable_use_gpu(256, gpu_id)
            if use_tensorrt:
                trt = {'fp32': inference.PrecisionType.Float32,
                       'fp16': inference.PrecisionType.Half,
                       'int8': inference.PrecisionType.Int8}
                config.enable_tensorrt_engine(
                    workspace_size=1 << 30, max_batch_size=1,
                    min_subgraph_size=3, precision_mode=trt[precision],
                    use_static=False, use_calib_mode=precision == 'int8')
        else:
            if use_tensorrt or precision != 'fp32':
                raise UserError('--use_tensorrt and --precision fp16/int8 '
                                'need --device gpu (on CPU, export with '
                                'export_model.py --quantize int8 or '
                                '--precision bf16)')
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(
                cpu_threads or len(os.sched_getaffinity(0)))
            if enable_mkldnn:
                config.enable_mkldnn()
                config.set_mkldnn_cache_capacity(mkldnn_cache_capacity)
                if export_precision == 'int8':
                    config.enable_mkldnn_int8()
                elif export_precision == 'bf16':
                    check_bf16('this BF16 export')
                    config.enable_mkldnn_bfloat16()
            elif export_precision != 'fp32':
                raise UserError(f'{graph.parent} is a {export_precision} '
                                f'export, which runs through oneDNN: drop '
                                f'--enable_mkldnn false')
            else:
                config.disable_mkldnn()
        config.disable_glog_info()
        config.switch_ir_optim(True)
        with stdout_silenced((1, 2)):  # errors come back as exceptions
            self.predictor = inference.create_predictor(config)
        self.input = self.predictor.get_input_handle(
            self.predictor.get_input_names()[0])
        self.outputs = [self.predictor.get_output_handle(name) for name in
                        self.predictor.get_output_names()]

    def __call__(self, x, output=0):
        """The graph's output number ``output`` for the batch ``x`` (a
        tuple of numbers: those outputs, of one run)."""
        self.input.reshape(x.shape)
        self.input.copy_from_cpu(x)
        with stdout_silenced():
            self.predictor.run()
        if isinstance(output, tuple):
            return tuple(self.outputs[i].copy_to_cpu() for i in output)
        return self.outputs[output].copy_to_cpu()


class OnnxRunner:
    """ONNX Runtime on CPU: ``runner(x)`` is the model's output for the
    input batch ``x``."""

    def __init__(self, path, cpu_threads=None):
        from .onnx_export import require
        ort = require('onnxruntime')
        options = ort.SessionOptions()
        options.intra_op_num_threads = cpu_threads or len(
            os.sched_getaffinity(0))
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        self.session = ort.InferenceSession(
            str(path), options, providers=['CPUExecutionProvider'])
        self.input = self.session.get_inputs()[0].name
        self.outputs = [o.name for o in self.session.get_outputs()]

    def __call__(self, x, output=0):
        """The model's output number ``output`` for the batch ``x`` (a
        tuple of numbers: those outputs, of one run)."""
        if isinstance(output, tuple):
            return tuple(self.session.run(
                [self.outputs[i] for i in output], {self.input: x}))
        return self.session.run([self.outputs[output]], {self.input: x})[0]
