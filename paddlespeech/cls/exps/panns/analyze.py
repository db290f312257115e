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
with its own model; --engine ray --address auto|HOST:PORT runs them as
Ray actors on a cluster (pip install 'paddlespeech-cls[ray]'), where the
input paths must be visible to every node (a shared filesystem).
"""
import os
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
from paddlespeech.cls.runtime import run

ENGINES = ('local', 'ray')


def get_parser():
    p = ConfigArgumentParser(description=__doc__)
    p.add('--input', nargs='+', required=True,
          help='folders, glob patterns (quoted) or list files')
    p.add('--output_dir', key='analysis_dir',
          help='the Parquet dataset (default: <export_dir>/../analysis)')
    p.add('--checkpoint', help='model.pdparams written by train.py')
    p.add('--model_dir', key='detect_model_dir',
          help='an export (export_model.py): the fast path')
    p.add('--pretrained', key='audioset', action='store_true',
          help='the 527 AudioSet classes with the pretrained tagger of '
          '--arch (downloaded once)')
    p.add('--arch', key='tag_arch', choices=sorted(BACKBONES),
          help='with --pretrained: the PANNs architecture')
    p.add('--pretrained_path', help='with --pretrained: AudioSet weights '
          '(.pdparams) instead of the download')
    p.add('--label_file', help=LABEL_FILE_HELP)
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
          help='processes (Ray actors), each with its own model')
    p.add('--cpus_per_worker', type=float,
          help='--engine ray: CPUs each actor reserves (default: '
          '--cpu_threads, else 1)')
    p.add('--cpu_threads', type=int,
          help='threads of each model (default: the cores shared among '
          'the workers)')
    p.add('--batch_size', key='infer_batch_size', type=int,
          help='windows per model run')
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
    given = [f for f, v in (('--checkpoint', cfg.checkpoint),
                            ('--model_dir', cfg.detect_model_dir),
                            ('--pretrained', cfg.audioset)) if v]
    if len(given) != 1:
        raise UserError('give exactly one model: --checkpoint, --model_dir '
                        f'or --pretrained (got {", ".join(given) or "none"})')
    check_detection_flags(cfg.detect, cfg.infer_batch_size)
    for flag, v in (('--top_k', cfg.analyze_top_k),
                    ('--workers', cfg.analyze_workers),
                    ('--part_files', cfg.part_files)):
        if v < 1:
            raise UserError(f'{flag} must be at least 1, got {v}')
    if cfg.engine == 'local' and cfg.address:
        raise UserError('--address is for --engine ray')


def model_kwargs(cfg):
    """``open_model``'s arguments, paths made absolute (run.json, other
    processes and nodes open the same model)."""
    def absolute(p):
        return os.path.abspath(p) if p else None
    return {'checkpoint': absolute(cfg.checkpoint),
            'model_dir': absolute(cfg.detect_model_dir),
            'arch': cfg.tag_arch if cfg.audioset else None,
            'pretrained': absolute(cfg.pretrained_path) if cfg.audioset
            else None,
            'device': cfg.device, 'cpu_threads': cfg.cpu_threads,
            'label_file': absolute(cfg.label_file),
            'feat_backend': cfg.feat_backend}


def main(argv):
    parser = get_parser()
    cfg = parser.parse_config(argv)
    check_args(cfg)
    kwargs = model_kwargs(cfg)
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
