"""Convert an original PANNs PyTorch checkpoint to Paddle weights.

    python -m paddlespeech.cls.exps.panns.convert --arch cnn14 \\
        --input Cnn14_mAP=0.431.pth --output panns_cnn14.pdparams

Reads the released checkpoints of Kong et al. ({'model': state_dict}) or a
plain state dict; anything missing, unexpected or mis-shaped is refused, so
a converted file always loads completely. Needs torch (only this command
does).
"""
import argparse

from paddlespeech.cls.runtime import prepare_process, run

prepare_process()

from paddlespeech.cls.models.panns.convert import convert
from paddlespeech.cls.models.panns.registry import BACKBONES


def get_parser():
    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='The output loads with --pretrained_path, or goes into the '
        'cache as $PADDLESPEECH_CLS_HOME/panns_<arch>.pdparams (default '
        '~/.cache/paddlespeech/cls) to replace the download.')
    p.add_argument('--arch', required=True, choices=sorted(BACKBONES),
                   help='architecture of the checkpoint (' + ', '.join(
                       f'{b.name}: {b.original}' for b in BACKBONES.values())
                   + ')')
    p.add_argument('--input', required=True, metavar='CKPT.pth',
                   help="original PyTorch checkpoint: {'model': state_dict} "
                   'as released, or a plain state dict')
    p.add_argument('--output', required=True, metavar='OUT.pdparams',
                   help='Paddle weights to write (written to a temporary '
                   'file and renamed, so it is never left half-written)')
    return p


def main(argv):
    args = get_parser().parse_args(argv)
    state = convert(args.arch, args.input, args.output)
    count = sum(value.size for value in state.values())
    print(f'wrote {args.output}: {args.arch}, {len(state)} tensors, '
          f'{count} values')


if __name__ == '__main__':
    run(main)
