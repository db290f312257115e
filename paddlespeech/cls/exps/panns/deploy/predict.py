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

from paddlespeech.cls.config import ConfigArgumentParser, parse_bool
from paddlespeech.cls.export import read_export
from paddlespeech.cls.features import FeatureConfig
from paddlespeech.cls.inference import Predictor
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
    p.add('--batch_size', key='infer_batch_size', type=int,
          help='clips (windows) per predictor run')
    p.add('--enable_mkldnn', type=parse_bool,
          help='use oneDNN kernels on CPU (true/false)')
    p.add('--use_tensorrt', type=parse_bool,
          help='GPU only: run through TensorRT (true/false)')
    p.add('--precision', key='trt_precision',
          choices=['fp32', 'fp16', 'int8'], help='GPU/TensorRT precision')
    add_prediction_args(p)
    return p


def main(argv):
    cfg = get_parser().parse_config(argv)
    check_prediction_args(cfg)
    device = select_device(cfg.device)
    _, _, meta = read_export(cfg.export_dir)
    check_contract(FeatureConfig.from_dict(meta['feature']), cfg,
                   cfg.export_dir)
    predictor = Predictor(cfg.export_dir, device, cfg.cpu_threads,
                          cfg.enable_mkldnn, cfg.use_tensorrt,
                          cfg.trt_precision)
    results = predict_files(expand_inputs(cfg.wav), predictor.feature,
                            predictor, cfg.window_seconds,
                            cfg.infer_batch_size)
    return print_predictions(results, predictor.labels, cfg.top_k)


if __name__ == '__main__':
    run(main)
