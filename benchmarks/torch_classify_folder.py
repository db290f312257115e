"""Classify every wav file of a folder with the PyTorch reference PANNs.

The plain PyTorch counterpart of ``deploy/predict.py --wav DIR``: load the
model, then for each file read it and resample to 32 kHz
(``librosa.load(sr=32000)``, as panns_inference's example does; soxr HQ,
the same resampler the recipe uses), batch clips of equal length, run the
reference model (torchlibrosa front end + network) under
``torch.inference_mode`` and print the top label per file. Random weights
(``tests.panns_reference.make_reference``): the timing does not depend on
them.

    PYTHONPATH=. python benchmarks/torch_classify_folder.py --wav DIR --arch cnn14 \
        --batch_size 8 --threads 2
"""
import argparse
from pathlib import Path


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--wav', required=True, help='folder of wav files')
    p.add_argument('--arch', default='cnn14', choices=['cnn14', 'cnn10',
                                                       'cnn6'])
    p.add_argument('--batch_size', type=int, default=8)
    p.add_argument('--threads', type=int, default=2)
    a = p.parse_args()

    import librosa
    import numpy as np
    import torch
    from tests import panns_reference
    torch.set_num_threads(a.threads)
    model = panns_reference.make_reference(a.arch)
    labels = panns_reference.import_panns_inference().labels

    def flush(batch):
        x = torch.from_numpy(np.stack([w for _, w in batch]))
        with torch.inference_mode():
            scores = model(x)['clipwise_output'].numpy()
        for (path, _), s in zip(batch, scores):
            i = int(s.argmax())
            print(f'{path}\t{labels[i]}\t{s[i]:.4f}')

    groups = {}
    for path in sorted(Path(a.wav).glob('*.wav')):
        wav, _ = librosa.load(str(path), sr=32000, mono=True)
        groups.setdefault(len(wav), []).append((path, wav))
        if len(groups[len(wav)]) >= a.batch_size:
            flush(groups.pop(len(wav)))
    for batch in groups.values():
        flush(batch)


if __name__ == '__main__':
    main()
