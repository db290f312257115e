"""The ``paddle.inference`` predictor of an exported model: the fast path
of ``deploy/predict.py``, the benchmarks and any service built on it."""
import contextlib
import os
import sys

import numpy as np
from paddle import inference

from .errors import UserError
from .export import read_export
from .features import FeatureConfig, FrontEnd
from .task import Task

_TRT_PRECISION = {
    'fp32': inference.PrecisionType.Float32,
    'fp16': inference.PrecisionType.Half,
    'int8': inference.PrecisionType.Int8,
}


class Predictor:
    """A paddle.inference predictor plus the export's metadata: called on
    equal-length waveforms, it returns their class scores."""

    def __init__(self, model_dir, device='cpu', cpu_threads=None,
                 enable_mkldnn=True, use_tensorrt=False, precision='fp32',
                 mkldnn_cache_capacity=2, label_file=None):
        """``mkldnn_cache_capacity``: input shapes oneDNN keeps compiled
        kernels for. Each holds its own copy of reordered weights (about
        300 MB for CNN14): over 300 files of random length a CNN14
        predictor held 3.8 GB with 10 shapes and 1.3 GB with 2, and was
        faster (14.5 vs 12.3 clips/s), since every length was new anyway.
        Two cover a folder's full batches and its last, shorter one.
        ``label_file``: class names of an export without ``model.json``."""
        graph, params, meta = read_export(model_dir, label_file)
        self.model_dir = model_dir
        self.logits = meta.get('logits', False)
        self.labels = meta['label_list']
        self.feature = FeatureConfig.from_dict(meta['feature'])
        self.task = Task.from_meta(meta)
        self.takes_waveform = meta['input'] == 'waveform'
        config = inference.Config(str(graph), str(params))
        if device.startswith('gpu'):
            gpu_id = int(device.partition(':')[2] or 0)
            config.enable_use_gpu(256, gpu_id)
            if use_tensorrt:
                config.enable_tensorrt_engine(
                    workspace_size=1 << 30, max_batch_size=1,
                    min_subgraph_size=3,
                    precision_mode=_TRT_PRECISION[precision],
                    use_static=False, use_calib_mode=precision == 'int8')
        else:
            if use_tensorrt or precision != 'fp32':
                raise UserError('--use_tensorrt and --precision fp16/int8 '
                                'need --device gpu')
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(
                cpu_threads or len(os.sched_getaffinity(0)))
            if enable_mkldnn:
                config.enable_mkldnn()
                config.set_mkldnn_cache_capacity(mkldnn_cache_capacity)
            else:
                config.disable_mkldnn()
        config.disable_glog_info()
        config.switch_ir_optim(True)
        self.predictor = inference.create_predictor(config)
        self.input = self.predictor.get_input_handle(
            self.predictor.get_input_names()[0])
        self.output = self.predictor.get_output_handle(
            self.predictor.get_output_names()[0])
        self.frontend = None if self.takes_waveform else FrontEnd(
            self.feature, 'numpy')

    def __call__(self, waves):
        """Scores ``[batch, num_class]`` of equal-length waveforms."""
        x = (np.stack(waves) if self.frontend is None else
             self.frontend.numpy(waves)).astype(np.float32)
        self.input.reshape(x.shape)
        self.input.copy_from_cpu(x)
        with _stdout_silenced():
            self.predictor.run()
        out = self.output.copy_to_cpu()
        if out.shape[-1] != len(self.labels):
            raise UserError(f'{self.model_dir} gives {out.shape[-1]} scores '
                            f'per clip but names {len(self.labels)} classes: '
                            f'pass --label_file (one class name per line)')
        if self.logits:
            e = np.exp(out - out.max(axis=-1, keepdims=True))
            out = e / e.sum(axis=-1, keepdims=True)
        return out


@contextlib.contextmanager
def _stdout_silenced():
    """Paddle 3.3's oneDNN passes print debug lines (``ReduceMeanCheckIf
    OneDNNSupport``) straight to file descriptor 1, inside our output."""
    sys.stdout.flush()
    saved, null = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)
