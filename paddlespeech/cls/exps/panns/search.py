"""Search an analysed archive by example: the windows whose embeddings are
most like a query clip's (cosine similarity, exact).

--index is the --output_dir of analyze.py --embeddings; the query is
embedded by the model that built it (refused if that model changed). In
--output_dir: hits.csv (rank,path,start,end,similarity), one Audacity
label file per file with hits (labels/<name>.txt) and hits.html, the
review page (snippets/ beside it): answer yes / no / other and Export a
manifest to train on (docs/search.md).
"""
import argparse
import csv
import io
from pathlib import Path

from paddlespeech.cls.runtime import prepare_process

prepare_process()

from paddlespeech.cls import atomic  # noqa: E402
from paddlespeech.cls.errors import UserError  # noqa: E402
from paddlespeech.cls.review import Candidate, write_review  # noqa: E402
from paddlespeech.cls.runtime import run  # noqa: E402
from paddlespeech.cls.search import (embed_query, open_index_model,  # noqa: E402
                                     read_run, search)


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=(
        argparse.RawDescriptionHelpFormatter))
    p.add_argument('--index', required=True, help='analysis directory')
    p.add_argument('--query', required=True, help='an audio file')
    p.add_argument('--query_start', type=float, help='seconds')
    p.add_argument('--query_end', type=float, help='seconds')
    p.add_argument('--top_k', type=int, default=50)
    p.add_argument('--min_similarity', type=float)
    p.add_argument('--exclude_same_file', action='store_true',
                   help='leave out windows of the query\'s own file')
    p.add_argument('--label', help='the label "yes" gives on the review '
                   'page (default: the query file\'s name)')
    p.add_argument('--output_dir', required=True)
    p.add_argument('--device', default='cpu')
    p.add_argument('--cpu_threads', type=int, default=2,
                   help='threads of the model that embeds the query')
    return p


def write_hits(out_dir, hits, title, label):
    out = Path(out_dir)
    text = io.StringIO()
    w = csv.writer(text, lineterminator='\n')
    w.writerow(['rank', 'path', 'start', 'end', 'similarity'])
    by_file = {}
    for i, h in enumerate(hits, 1):
        w.writerow([i, h.path, f'{h.start:.3f}', f'{h.end:.3f}',
                    f'{h.similarity:.6f}'])
        by_file.setdefault(h.path, []).append((i, h))
    atomic.write_text(out / 'hits.csv', text.getvalue())
    stems = {}
    for path, rows in by_file.items():
        stem = Path(path).stem
        stems[stem] = stems.get(stem, 0) + 1
        name = stem if stems[stem] == 1 else f'{stem}_{stems[stem]}'
        atomic.write_text(out / 'labels' / f'{name}.txt', ''.join(
            f'{h.start:.6f}\t{h.end:.6f}\t#{i} {h.similarity:.3f}\n'
            for i, h in sorted(rows, key=lambda r: r[1].start)))
    write_review(out, [Candidate(h.path, h.start, h.end, h.similarity)
                       for h in hits], title, label, 'similarity')


def main(argv):
    args = get_parser().parse_args(argv)
    if args.top_k < 1:
        raise UserError(f'--top_k must be at least 1, got {args.top_k}')
    run_info = read_run(args.index)
    model = open_index_model(args.index, run_info, device=args.device,
                             cpu_threads=args.cpu_threads)
    w = run_info.get('windowing') or {}
    query = embed_query(model, args.query, args.query_start, args.query_end,
                        w.get('window_seconds'), w.get('hop_seconds'))
    exclude = [str(Path(args.query).resolve()), args.query] \
        if args.exclude_same_file else ()
    hits = search(args.index, query, args.top_k, args.min_similarity,
                  exclude)
    label = args.label or Path(args.query).stem
    write_hits(args.output_dir, hits, f'Windows like {args.query}', label)
    for i, h in enumerate(hits, 1):
        print(f'{i}\t{h.path}\t{h.start:.3f}\t{h.end:.3f}\t'
              f'{h.similarity:.4f}')
    print(f'{len(hits)} hits in {Path(args.output_dir) / "hits.csv"}; '
          f'review them in {Path(args.output_dir) / "hits.html"}')
    return 0


if __name__ == '__main__':
    run(main)
