"""Classify audio files with an exported model: paddle.inference for a
Paddle export (fp32, INT8, BF16), ONNX Runtime for an ONNX one; the
backend is read from --model_dir's model.json.

Inputs may be files or directories; clips of equal length are batched
(--batch_size), so results do not depend on what else is in the batch.
"""
from paddlespeech.cls.runtime import prepare_process, run

prepare_process()

from paddlespeech.cls.audio import Windowing
from paddlespeech.cls.config import parse_bool
from paddlespeech.cls.inference import Predictor
from paddlespeech.cls.prediction import (LABEL_FILE_HELP, check_contract,
                                         expand_inputs, predict_files,
                                         prediction_parser, print_predictions,
                                         start)


def get_parser():
    p = prediction_parser(__doc__, feat_backend=False)
    p.add('--model_dir', key='export_dir',
          help='directory written by export_model.py (or by upstream '
          'PaddleSpeech\'s)')
    p.add('--label_file', help=LABEL_FILE_HELP)
    p.add('--batch_size', key='infer_batch_size', type=int,
          help='clips (windows) per predictor run')
    p.add('--enable_mkldnn', type=parse_bool,
          help='use oneDNN kernels on CPU (true/false)')
    p.add('--use_tensorrt', type=parse_bool,
          help='GPU only: run through TensorRT (true/false)')
    p.add('--precision', key='trt_precision',
          choices=['fp32', 'fp16', 'int8'], help='GPU/TensorRT precision '
          '(an INT8/BF16 CPU export needs no flag)')
    p.add('--backend', choices=['paddle', 'onnxruntime'],
          help='insist on a backend (default: the one the export was made '
          'for)')
    return p


def main(argv):
    cfg = get_parser().parse_config(argv)
    device = start(cfg, dynamic_graph=False)
    predictor = Predictor(cfg.export_dir, device, cfg.cpu_threads,
                          cfg.enable_mkldnn, cfg.use_tensorrt,
                          cfg.trt_precision, label_file=cfg.label_file,
                          backend=cfg.backend)
    check_contract(predictor.feature, cfg, cfg.export_dir)
    results = predict_files(expand_inputs(cfg.wav), predictor.feature,
                            predictor, Windowing.of_model(
                                predictor.clip_seconds, cfg.window_seconds),
                            cfg.infer_batch_size)
    return print_predictions(results, predictor.labels, cfg.top_k)


if __name__ == '__main__':
    run(main)
