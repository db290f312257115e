"""Export a trained checkpoint for deployment: a Paddle static graph (the
default) or ONNX, in fp32, INT8 or BF16.

The graph outputs class probabilities (softmax; sigmoid per class for a
model trained on multi-label data). By default it takes log-mel
features ``[batch, frames, n_mels]`` (as in the original recipe); with
``--include_frontend`` it takes the raw waveform ``[batch, samples]`` at
the model's sample rate and computes the features inside the graph
(Paddle fp32 only). ``model.json`` beside the graph records which, plus
labels, features, backend and precision. ``--quantize int8`` calibrates on
clips of the training folds and ``--precision bf16`` uses the CPU's BF16
instructions; both are checked on the dev fold against fp32 and refused
when the score falls by more than ``--max_drop`` points.
"""
from pathlib import Path

from paddlespeech.cls.runtime import prepare_process, run

prepare_process()

from paddlespeech.cls.config import ConfigArgumentParser, LABEL_FILE_HELP
from paddlespeech.cls.errors import UserError
from paddlespeech.cls.artifact import FORMATS
from paddlespeech.cls.export import export


def get_parser():
    p = ConfigArgumentParser(description=__doc__)
    p.add('--checkpoint', required=True,
          help='model.pdparams written by train.py (or its epoch_N dir)')
    p.add('--output_dir', key='export_dir',
          help='directory for the graph and model.json (replaced as a '
          'whole)')
    p.add('--include_frontend', action='store_true',
          help='graph input is the raw waveform instead of log-mel features')
    p.add('--label_file', help=LABEL_FILE_HELP)
    p.add('--format', key='export_format', choices=sorted(FORMATS),
          help='paddle (paddle.inference) or onnx (ONNX Runtime; needs '
          'pip install -r requirements-onnx.txt)')
    p.add('--quantize', choices=['int8'],
          help='post-training static INT8 quantisation (CPU)')
    p.add('--precision', key='export_precision', choices=['fp32', 'bf16'],
          help='bf16: oneDNN bfloat16 kernels, on CPUs with AVX-512 BF16 '
          'or AMX (refused elsewhere)')
    p.add('--data_dir', help='dataset whose training folds calibrate '
          '--quantize and whose dev fold (--split) checks accuracy')
    p.add('--split', type=int, help='dev fold: never calibrated on; the '
          'accuracy check runs it')
    p.add('--calib_data', help='calibration clips instead of --data_dir\'s '
          'training folds: a dataset, a folder of audio files or a text '
          'file listing them')
    p.add('--calib_clips', type=int, help='number of calibration clips '
          '(classes take turns)')
    p.add('--check_data', help='dataset whose dev fold (--split) runs the '
          'accuracy check instead of --data_dir\'s')
    p.add('--max_drop', type=float, help='refuse the low-precision export '
          'when its dev score is this many points below fp32\'s')
    p.add('--force', action='store_true',
          help='write the low-precision export even if it fails --max_drop')
    return p


def main(argv):
    cfg = get_parser().parse_config(argv)
    precision = cfg.quantize or cfg.export_precision
    if cfg.quantize and cfg.export_precision != 'fp32':
        raise UserError('--quantize int8 and --precision bf16 exclude each '
                        'other: pick one')
    if precision == 'fp32':
        out = export(cfg.checkpoint, cfg.export_dir, cfg.include_frontend,
                     cfg.label_file, cfg.export_format)
    else:
        from paddlespeech.cls import quantize
        if cfg.include_frontend:
            raise UserError(f'{precision} exports take log-mel input: drop '
                            f'--include_frontend')
        quantize.export_low_precision(
            cfg.checkpoint, cfg.export_dir, precision,
            quantize.calibration_set(cfg.data, cfg.train, cfg.calib_data,
                                     cfg.calib_clips, cfg.seed)
            if cfg.quantize else None,
            quantize.check_set(cfg.data, cfg.train, cfg.check_data),
            cfg.export_format,
            cfg.max_drop, cfg.force, cfg.label_file, cfg.window_seconds,
            cfg.cpu_threads)
        out = cfg.export_dir
    print(f'exported {cfg.checkpoint} to {out} ({cfg.export_format}, '
          f'{precision}): '
          f'{", ".join(sorted(p.name for p in Path(out).iterdir()))}')
    return 0


if __name__ == '__main__':
    run(main)
