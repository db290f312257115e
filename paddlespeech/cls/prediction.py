"""What predict.py, tag.py and deploy/predict.py share: inputs and output."""
import sys
from pathlib import Path

import numpy as np

from .audio import AUDIO_SUFFIXES
from .errors import UserError


def expand_inputs(inputs):
    """Files as given, directories expanded to their audio files (sorted)."""
    paths = []
    for item in inputs:
        p = Path(item)
        if p.is_dir() and p.suffix.lower() not in AUDIO_SUFFIXES:
            found = sorted(f for f in p.rglob('*')
                           if f.suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                raise UserError(f'{p}: directory holds no audio files '
                                f'({", ".join(sorted(AUDIO_SUFFIXES))})')
            paths.extend(found)
        else:
            paths.append(p)
    return paths


def format_block(path, scores, labels, top_k):
    """The seed's output: ``[path]`` then ``Label: score`` lines, best first."""
    order = np.argsort(-scores, kind='stable')[:top_k]
    lines = [f'[{path}]'] + [f'{labels[i]}: {float(scores[i])}' for i in order]
    return '\n'.join(lines)


def report_failures(messages):
    """One stderr line per failed input (each names its file); exit status."""
    for message in messages:
        print(f'error: {message}', file=sys.stderr)
    return 1 if messages else 0


def add_contract_args(parser):
    """Optional front-end settings; they must equal the model's stored ones."""
    parser.add_argument('--sample_rate', type=int, help='only checked: must '
                        'equal the sample rate stored with the model')
    parser.add_argument('--n_mels', type=int, help='only checked: must '
                        'equal the number of mel bins stored with the model')


def check_contract(feature, cfg, source):
    """Refuse front-end settings that contradict the model's own."""
    bad = feature.mismatches(sample_rate=getattr(cfg, 'sample_rate', None),
                             n_mels=getattr(cfg, 'n_mels', None))
    if bad:
        raise UserError(f'{source} was trained with other features: '
                        f'{", ".join(bad)}; the stored settings are used '
                        f'automatically, drop these flags')
