"""Write the synthetic demo data: a small dataset in ESC-50 layout
(audio/*.wav, meta/esc50.csv), or the same clips as a folder per class or a
manifest (--layout), or a long recording with sounds at known times for
detect.py (--long_recording). Stage 0 makes the demo set (dataset:
synthetic) the same way.
"""
import argparse

from paddlespeech.cls.runtime import prepare_process, run

prepare_process()

from paddlespeech.cls.datasets.synthetic import (CLASSES, LAYOUTS, generate,
                                                 write_long_recording)


def main(argv):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--out_dir', help='dataset root to write')
    p.add_argument('--classes', type=int, default=6,
                   help=f'number of classes (1..{len(CLASSES)})')
    p.add_argument('--clips_per_fold', type=int, default=3,
                   help='clips per class in each fold')
    p.add_argument('--folds', type=int, default=5, help='number of folds')
    p.add_argument('--seconds', type=float, default=1.0, help='clip length')
    p.add_argument('--sample_rate', type=int, default=44100,
                   help='sample rate of the written wav files')
    p.add_argument('--seed', type=int, default=0, help='random seed')
    p.add_argument('--mixtures_per_fold', type=int, default=0,
                   help='clips per fold mixing two classes, each listed on '
                   'two rows: a multi-label set (0: single-label)')
    p.add_argument('--layout', choices=LAYOUTS, default='esc50',
                   help='esc50: audio/ + meta/esc50.csv; folder: a folder '
                   'per class (no folds); manifest: a folder per class and '
                   'metadata.csv (file_name,label,fold)')
    p.add_argument('--long_recording', metavar='WAV',
                   help='instead of a dataset, write a recording with '
                   'sounds of the demo classes at known times (its events '
                   'in WAV.truth.csv), for detect.py')
    p.add_argument('--long_seconds', type=float, default=60.0,
                   help='length of --long_recording')
    a = p.parse_args(argv)
    if a.long_recording:
        write_long_recording(a.long_recording, a.long_seconds, a.sample_rate,
                             a.seed)
        print(f'wrote {a.long_recording} and its .truth.csv')
        return 0
    if not a.out_dir:
        p.error('--out_dir (or --long_recording) is required')
    root = generate(a.out_dir, a.classes, a.clips_per_fold, a.folds,
                    a.seconds, a.sample_rate, a.seed, a.mixtures_per_fold,
                    a.layout)
    print(f'wrote {root}')
    return 0


if __name__ == '__main__':
    run(main)
