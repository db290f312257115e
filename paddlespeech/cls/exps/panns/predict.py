"""Predict the class of audio files with a trained checkpoint (dynamic graph)."""
import paddlespeech.cls  # noqa: F401  (must precede paddle: MKL setup)

import paddle

from paddlespeech.cls.audio import AudioError, load_audio
from paddlespeech.cls.checkpoint import load_classifier
from paddlespeech.cls.config import ConfigArgumentParser
from paddlespeech.cls.features import NumpyLogMel, paddle_logmel
from paddlespeech.cls.prediction import (add_contract_args, check_contract,
                                         expand_inputs, format_block,
                                         report_failures)
from paddlespeech.cls.runtime import run, select_device, set_cpu_threads


def get_parser():
    p = ConfigArgumentParser(description=__doc__)
    p.add('--device', help='cpu, gpu or gpu:N (default: gpu if available)')
    p.add('--wav', nargs='+', required=True,
          help='audio file(s) or directories to classify')
    p.add('--feat_backend', choices=['numpy', 'paddle'],
          help='front end used to compute log-mel features')
    p.add('--top_k', type=int, help='number of labels printed per file')
    p.add('--checkpoint', required=True,
          help='model.pdparams written by train.py (or its epoch_N dir)')
    p.add('--backbone', key='expected_backbone',
          choices=['cnn14', 'cnn10', 'cnn6'],
          help='only checked: must match the checkpoint')
    p.add('--cpu_threads', type=int, help='CPU threads (default: all cores)')
    add_contract_args(p)
    return p


def main(argv):
    cfg = get_parser().parse_config(argv)
    select_device(cfg.device)
    set_cpu_threads(cfg.cpu_threads)
    model, labels, feature = load_classifier(cfg.checkpoint,
                                        getattr(cfg, 'expected_backbone', None))
    check_contract(feature, cfg, cfg.checkpoint)
    if cfg.feat_backend == 'numpy':
        numpy_frontend = NumpyLogMel(feature)
        extract = lambda wav: paddle.to_tensor(numpy_frontend(wav))[None]
    else:
        paddle_frontend = paddle_logmel(feature)
        extract = lambda wav: paddle_frontend(paddle.to_tensor(wav)[None])

    failures = []
    for path in expand_inputs(cfg.wav):
        try:
            wav = load_audio(path, feature.sample_rate, feature.n_fft)
        except AudioError as e:
            failures.append(str(e))
            continue
        with paddle.no_grad():
            probs = paddle.nn.functional.softmax(model(extract(wav)), -1)
        print(format_block(path, probs.numpy()[0], labels, cfg.top_k),
              flush=True)
    return report_failures(failures)


if __name__ == '__main__':
    run(main)
