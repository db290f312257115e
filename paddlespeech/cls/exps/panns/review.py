"""A review page of detected events: detect.py's <name>.events.csv files
(or its --output_dir) as hits.html in --output_dir, one row per event
with its audio snippet, spectrogram and score; answer yes / no / other
and Export a manifest (path,label,start,end) to train on
(docs/search.md). "yes" keeps the event's own label."""
import argparse
import csv
from pathlib import Path

from paddlespeech.cls.runtime import prepare_process

prepare_process()

from paddlespeech.cls.errors import UserError  # noqa: E402
from paddlespeech.cls.review import Candidate, write_review  # noqa: E402
from paddlespeech.cls.runtime import run  # noqa: E402


def get_parser():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--events', nargs='+', required=True,
                   help='<name>.events.csv files or folders of them')
    p.add_argument('--label', help='only events of this label')
    p.add_argument('--min_score', type=float, default=0.0)
    p.add_argument('--output_dir', required=True)
    return p


def read_events(sources, label=None, min_score=0.0):
    files = []
    for s in map(Path, sources):
        files += sorted(s.glob('*.events.csv')) if s.is_dir() else [s]
    out = []
    for f in files:
        try:
            with open(f, newline='') as fh:
                rows = list(csv.DictReader(fh))
            out += [Candidate(r['filename'], float(r['onset']),
                              float(r['offset']), float(r['score']),
                              r['label']) for r in rows
                    if (label is None or r['label'] == label)
                    and float(r['score']) >= min_score]
        except (OSError, KeyError, ValueError) as e:
            raise UserError(f'{f} is not an events file of detect.py '
                            f'(filename,onset,offset,label,score): {e}')
    return sorted(out, key=lambda c: -c.score)


def main(argv):
    args = get_parser().parse_args(argv)
    events = read_events(args.events, args.label, args.min_score)
    if not events:
        raise UserError(f'no events in {" ".join(args.events)}'
                        f'{" of label " + args.label if args.label else ""}')
    labels = sorted({e.label for e in events})
    page = write_review(args.output_dir, events, 'Detected events',
                        labels[0] if len(labels) == 1 else '', 'score')
    print(f'{len(events)} events to review in {page}')
    return 0


if __name__ == '__main__':
    run(main)
