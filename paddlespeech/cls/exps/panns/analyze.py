"""Analyse whole archives: every file's window scores (tags), events and
embeddings into one Parquet dataset that pandas, DuckDB, Polars and Spark
read directly (docs/analyze.md).

Give one model: --model_dir (an export, the fast path), --checkpoint
(train.py) or --pretrained (the AudioSet tagger of --arch). --input takes
folders (searched recursively; hidden files skipped and counted), glob
patterns and list files (.txt: a path per line; .csv/.tsv: a path
column). Windows and events are detect.py's, with its flags and defaults.

The run can be stopped at any moment: rows are committed a part at a time
and the journal in --output_dir records each file only once its rows are
in, so the same command again skips the files done, redoes the ones
changed since (by size and modification time) and finishes the rest.
Ctrl-C commits the files done and exits 130. A directory holds the results
of one model and one set of window and event flags; other flags into it
are refused. A file that cannot be used gets status=error and its reason
in files/; the exit status is 0 when every file was analysed, 1 when some
failed, 2 for a usage error.

Engines: --engine local (default) runs --workers processes here, each
with its own model (one worker reads in a process of its own while its
model runs: the fastest on a small machine); --engine ray --address
auto|HOST:PORT reads in Ray tasks and runs the models as Ray actors on a
cluster (pip install 'paddlespeech-cls[ray]'), where the input paths
must be visible to every node (a shared filesystem).
"""
import shlex
import sys

from paddlespeech.cls.runtime import prepare_process

prepare_process()

from paddlespeech.cls.config import (LABEL_FILE_HELP, ConfigArgumentParser,
                                     parse_bool)
from paddlespeech.cls.analysis.analyzer import Settings
from paddlespeech.cls.errors import UserError
from paddlespeech.cls.events import add_detection_flags, check_detection_flags
from paddlespeech.cls.features import FEAT_BACKENDS
from paddlespeech.cls.models import BACKBONES
from paddlespeech.cls.opener import add_model_flags, model_kwargs
from paddlespeech.cls.runtime import run

ENGINES = ('local', 'ray')


def get_parser():
    p = ConfigArgumentParser(description=__doc__)
    p.add('--input', nargs='+', required=True,
          help='folders, glob patterns (quoted) or list files')
    p.add('--output_dir', key='analysis_dir',
          help='the Parquet dataset (default: <export_dir>/../analysis)')
    add_model_flags(p, BACKBONES, LABEL_FILE_HELP)
    add_detection_flags(p)
    p.add('--top_k', key='analyze_top_k', type=int,
          help='labels (and scores) kept per window, best first')
    p.add('--scores', choices=('top', 'all'),
          help='all: every class\'s score per window too')
    p.add('--embeddings', type=parse_bool,
          help='the embedding of every window, float16 (true/false)')
    p.add('--engine', choices=ENGINES, help='where the models run')
    p.add('--address', help='--engine ray: the cluster (auto, HOST:PORT); '
          'default: a Ray on this machine')
    p.add('--workers', key='analyze_workers', type=int,
          help='processes (Ray actors), each with its own model; 1 '
          '(the default) reads in a process beside its model')
    p.add('--cpus_per_worker', type=float,
          help='--engine ray: CPUs each actor reserves (default: '
          '--cpu_threads, else 1)')
    p.add('--cpu_threads', type=int,
          help='threads of each model (default: the cores shared among '
          'the workers)')
    p.add('--batch_size', key='infer_batch_size', type=int,
          help='windows per model run (the windows of successive files '
          'share a run)')
    p.add('--part_files', type=int,
          help='files per committed part')
    p.add('--part_seconds', type=float,
          help='a part committed at least this often')
    p.add('--quiet', type=parse_bool,
          help='no progress bar and no per-file error lines (true/false)')
    p.add('--device', help='cpu, gpu or gpu:N (default: gpu if available)')
    p.add('--feat_backend', choices=FEAT_BACKENDS,
          help='front end of --checkpoint and --pretrained')
    return p


def check_args(cfg):
    model_kwargs(cfg.runtime, cfg.predict, cfg.detect, cfg.model)
    check_detection_flags(cfg.detect, cfg.infer_batch_size)
    for flag, v in (('--top_k', cfg.analyze_top_k),
                    ('--workers', cfg.analyze_workers),
                    ('--part_files', cfg.part_files)):
        if v < 1:
            raise UserError(f'{flag} must be at least 1, got {v}')
    if cfg.engine == 'local' and cfg.address:
        raise UserError('--address is for --engine ray')


def main(argv):
    parser = get_parser()
    cfg = parser.parse_config(argv)
    check_args(cfg)
    kwargs = model_kwargs(cfg.runtime, cfg.predict, cfg.detect, cfg.model,
                          absolute=True)
    if cfg.audioset:
        from paddlespeech.cls.scoring import check_tagger_feature
        check_tagger_feature(cfg.feature, cfg.config)
    flags = {a.dest: getattr(cfg, a.dest) for a in parser._actions
             if a.option_strings and hasattr(cfg, a.dest)
             and a.dest not in ('help', 'debug')}

    settings = Settings(cfg.detect, cfg.analyze, cfg.infer_batch_size)

    def open_engine():
        if cfg.engine == 'ray':
            from paddlespeech.cls.analysis.ray_engine import RayEngine
            return RayEngine(kwargs, settings, cfg.address,
                             cfg.analyze_workers, cfg.cpus_per_worker)
        from paddlespeech.cls.analysis.engines import local_engine
        return local_engine(kwargs, settings, cfg.analyze_workers)

    from paddlespeech.cls.analysis.runner import analyze
    return analyze(cfg.analyze, settings, kwargs, flags, open_engine,
                   shlex.join([sys.argv[0], *argv]))


if __name__ == '__main__':
    run(main)
