"""Classify audio files with an exported model through paddle.inference.

Inputs may be files or directories; clips of equal length are batched
(``--batch_size``), so results do not depend on what else is in the batch.
Files longer than --window_seconds are classified window by window and the
window probabilities averaged, so any length fits in memory. A file that
cannot be used gets one ``error:`` line on stderr and the others are still
predicted; the exit status is 0 only if every file was predicted.
"""
import paddlespeech.cls  # noqa: F401  (must precede paddle: MKL setup)

import argparse
import contextlib
import os
import sys

import numpy as np
from paddle import inference

from paddlespeech.cls.config import ConfigArgumentParser, parse_bool
from paddlespeech.cls.errors import UserError
from paddlespeech.cls.export_meta import read_export
from paddlespeech.cls.features import FeatureConfig, NumpyLogMel
from paddlespeech.cls.prediction import (add_prediction_args, check_contract,
                                         check_prediction_args, expand_inputs,
                                         predict_files, print_predictions)
from paddlespeech.cls.runtime import run, select_device


def get_parser():
    p = ConfigArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add('--model_dir', key='export_dir',
          help='directory written by export_model.py')
    p.add('--batch_size', type=int, help='clips (windows) per predictor run')
    p.add('--enable_mkldnn', type=parse_bool, default=True,
          help='use oneDNN kernels on CPU (true/false, default: true)')
    p.add('--use_tensorrt', type=parse_bool, default=False,
          help='GPU only: run through TensorRT (true/false, default: false)')
    p.add('--precision', choices=['fp32', 'fp16', 'int8'], default='fp32',
          help='GPU/TensorRT precision (default: fp32)')
    add_prediction_args(p)
    return p


class Predictor:
    """A paddle.inference predictor plus the export's metadata."""

    def __init__(self, model_dir, device='cpu', cpu_threads=None,
                 enable_mkldnn=True, use_tensorrt=False, precision='fp32',
                 mkldnn_cache_capacity=2):
        """``mkldnn_cache_capacity``: input shapes oneDNN keeps compiled
        kernels for. Each holds its own copy of reordered weights (about
        300 MB for CNN14): over 300 files of random length a CNN14
        predictor held 3.8 GB with 10 shapes and 1.3 GB with 2, and was
        faster (14.5 vs 12.3 clips/s), since every length was new anyway.
        Two cover a folder's full batches and its last, shorter one."""
        graph, params, meta = read_export(model_dir)
        self.labels = meta['label_list']
        self.feature = FeatureConfig.from_dict(meta['feature'])
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
        if not self.takes_waveform:
            self.extract = NumpyLogMel(self.feature)

    def __call__(self, waves):
        """Probabilities ``[batch, num_class]`` of equal-length waveforms."""
        x = np.stack(waves if self.takes_waveform else
                     [self.extract(w) for w in waves]).astype(np.float32)
        self.input.reshape(x.shape)
        self.input.copy_from_cpu(x)
        with _stdout_silenced():
            self.predictor.run()
        return self.output.copy_to_cpu()


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


_TRT_PRECISION = {
    'fp32': inference.PrecisionType.Float32,
    'fp16': inference.PrecisionType.Half,
    'int8': inference.PrecisionType.Int8,
}


def main(argv):
    cfg = get_parser().parse_config(argv)
    check_prediction_args(cfg)
    device = select_device(cfg.device)
    _, _, meta = read_export(cfg.export_dir)
    check_contract(FeatureConfig.from_dict(meta['feature']), cfg,
                   cfg.export_dir)
    predictor = Predictor(cfg.export_dir, device, cfg.cpu_threads,
                          cfg.enable_mkldnn, cfg.use_tensorrt, cfg.precision)
    results = predict_files(expand_inputs(cfg.wav), predictor.feature,
                            predictor, cfg.window_seconds, cfg.batch_size)
    return print_predictions(results, predictor.labels, cfg.top_k)


if __name__ == '__main__':
    run(main)
