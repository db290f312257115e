"""Classify audio files with an exported model: paddle.inference for a
Paddle export (fp32, INT8, BF16), ONNX Runtime for an ONNX one; the
backend is read from --model_dir's model.json.

Inputs may be files or directories; clips of equal length are batched
(--batch_size), so results do not depend on what else is in the batch.
"""
from paddlespeech.cls.runtime import prepare_process, run

prepare_process()

from paddlespeech.cls import prediction
from paddlespeech.cls.config import (LABEL_FILE_HELP, parse_bool,
                                     prediction_parser)
from paddlespeech.cls.opener import open_model


def get_parser():
    p = prediction_parser(__doc__, feat_backend=False)
    p.add('--model_dir', key='export_dir',
          help='directory written by export_model.py (or by upstream '
          'PaddleSpeech\'s)')
    p.add('--label_file', help=LABEL_FILE_HELP)
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


def open_for(cfg):
    return open_model(model_dir=cfg.export_dir, device=cfg.device,
                      cpu_threads=cfg.cpu_threads, label_file=cfg.label_file,
                      enable_mkldnn=cfg.enable_mkldnn,
                      use_tensorrt=cfg.use_tensorrt,
                      precision=cfg.trt_precision, backend=cfg.backend)


def main(argv):
    return prediction.main(argv, get_parser, open_for)


if __name__ == '__main__':
    run(main)
