"""Sound-event detection: which sounds occur when in long recordings.

Give one model: --checkpoint (train.py), --model_dir (an export, the fast
path) or --pretrained (the 527-class AudioSet tagger of --arch). Each file
is read in blocks and scored in windows of --window_seconds every
--hop_seconds, batched; per class, a window score at or over --threshold
opens an event and one under --threshold_off closes it. An event covers
the hop-long centre regions of its windows, so overlapping windows do not
lengthen it. With --threshold auto (the default for a model calibrated
by calibrate.py) each class has its own threshold.

Scores: a multi-label model (trained on clips with several labels, and the
AudioSet tagger) scores each class on its own (sigmoid), so several
classes can be active at once. A single-label model's softmax scores sum
to one over its classes: --threshold 0.5 then means "this class holds most
of the window", and two sounds at once share the score (lower the
threshold, e.g. 0.3, to see both; --top_k_per_window 1 keeps the best).
A model with calibrated per-class thresholds (model.json "thresholds")
uses them in place of --threshold for those classes.

Live audio: --wav - reads raw PCM from stdin (--sample_rate, --channels,
--format), e.g. ffmpeg -i rtsp://... -f s16le -ac 1 -ar 32000 - | detect.py
--model_dir DIR --wav -, and --live records the default microphone (pip
install sounddevice); each event is printed, and appended to the events
CSV and label track, when it closes; the windows, scores and events are
those of the same audio in a file.
"""
import sys
from pathlib import Path

from paddlespeech.cls.runtime import prepare_process

prepare_process()

import numpy as np
from tqdm import tqdm

from paddlespeech.cls.audio import AudioError
from paddlespeech.cls.config import (LABEL_FILE_HELP, ConfigArgumentParser,
                                     parse_bool)
from paddlespeech.cls.errors import UserError
from paddlespeech.cls.events import (CSV_HEADER, add_detection_flags,
                                     audacity_labels, check_detection_flags,
                                     class_columns, class_thresholds,
                                     csv_row, detection_windowing,
                                     format_event, stream_timeline, summary,
                                     timeline_events, write_outputs)
from paddlespeech.cls.live import (PCM_FORMATS, LiveDetector,
                                   open_microphone, pcm_chunks, record)
from paddlespeech.cls.features import FEAT_BACKENDS
from paddlespeech.cls.models import BACKBONES
from paddlespeech.cls.prediction import expand_inputs
from paddlespeech.cls.opener import (add_model_flags, model_kwargs,
                                     open_model)
from paddlespeech.cls.runtime import run
from paddlespeech.cls.scoring import check_tagger_feature

OUTPUT_HELP = """\
Output in --output_dir, per input file <name>: <name>.events.csv
(filename,onset,offset,label,score; seconds), <name>.scores.npz (window
centres, region bounds, labels, scores), <name>.labels.txt (Audacity label
track: File > Import > Labels) and <name>.png (envelope, heat map of the top
classes, events as bars). On stdout one tab-separated line per event
(file, onset, offset, label, score), then a summary line per file. A file
that cannot be used gets one "error:" line on stderr and the others go on;
the exit status is 0 only if every file was scored."""


def get_parser():
    p = ConfigArgumentParser(description=__doc__, epilog=OUTPUT_HELP)
    p.add('--wav', nargs='+',
          help='audio file(s) or directories; - : raw PCM on stdin')
    p.add('--sample_rate', key='pcm_sample_rate', type=int,
          help='with --wav -: samples per second (default: the model\'s)')
    p.add('--channels', key='pcm_channels', type=int,
          help='with --wav -: interleaved channels (mixed down to mono)')
    p.add('--format', key='pcm_format', choices=sorted(PCM_FORMATS),
          help='with --wav -: s16le (16-bit) or f32le (32-bit float)')
    p.add('--live', action='store_true',
          help='record the default microphone until Ctrl-C (needs the '
          'sounddevice package)')
    add_model_flags(p, BACKBONES, LABEL_FILE_HELP)
    add_detection_flags(p)
    p.add('--output_dir', key='detect_dir',
          help='where the per-file outputs go (default: <export_dir>/../'
          'detect, beside the config\'s export)')
    p.add('--plot', type=parse_bool, help='write <name>.png (true/false)')
    p.add('--batch_size', key='infer_batch_size', type=int,
          help='windows per model run')
    p.add('--device', help='cpu, gpu or gpu:N (default: gpu if available)')
    p.add('--cpu_threads', type=int, help='CPU threads (default: all cores)')
    p.add('--feat_backend', choices=FEAT_BACKENDS,
          help='front end of --checkpoint and --pretrained')
    return p


def check_args(cfg):
    model_kwargs(cfg.runtime, cfg.predict, cfg.detect, cfg.model)
    if bool(cfg.wav) == bool(cfg.live):
        raise UserError('give --wav FILE..., --wav - (raw PCM on stdin) or '
                        '--live (the microphone)')
    if cfg.pcm_channels < 1 or (cfg.pcm_sample_rate is not None and
                                cfg.pcm_sample_rate < 1):
        raise UserError(f'--channels and --sample_rate must be at least 1, '
                        f'got {cfg.pcm_channels} and {cfg.pcm_sample_rate}')
    check_detection_flags(cfg.detect, cfg.infer_batch_size)


def open_for(cfg):
    if cfg.audioset:
        check_tagger_feature(cfg.feature, cfg.config)
    return open_model(**model_kwargs(cfg.runtime, cfg.predict, cfg.detect,
                                     cfg.model))


def windowing(cfg, model):
    try:
        return detection_windowing(model.clip_seconds,
                                   cfg.detect_window_seconds, cfg.hop_seconds)
    except UserError as e:
        raise UserError(f'--{e}') from None


def output_names(paths):
    """File stems, made unique with a number where two inputs share one."""
    seen, names = {}, []
    for p in paths:
        stem = Path(p).stem
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f'{stem}_{seen[stem]}')
    return names


def score_file(path, model, windows, batch_size):
    """The file's timeline, with a progress line on a terminal only."""
    with tqdm(desc=Path(path).name, unit='s audio', leave=False,
              bar_format='{desc}: {n:.0f} {unit} {rate_fmt}',
              file=sys.stderr, disable=None) as bar:
        return stream_timeline(path, model.scores, model.labels,
                               model.feature.sample_rate, windows,
                               batch_size,
                               progress=lambda s: bar.update(s - bar.n))


def main(argv):
    cfg = get_parser().parse_config(argv)
    check_args(cfg)
    if cfg.live or cfg.wav == ['-']:
        return detect_live(cfg)
    paths = expand_inputs(cfg.wav)
    model = open_for(cfg)
    windows = windowing(cfg, model)
    classes = class_columns(cfg.classes, model.labels)
    on, off = class_thresholds(cfg.threshold, cfg.threshold_off,
                               model.labels, model.meta.thresholds,
                               model.source)
    failed = 0
    for path, name in zip(paths, output_names(paths)):
        try:
            tl = score_file(path, model, windows, cfg.infer_batch_size)
        except AudioError as e:
            print(f'error: {e}', file=sys.stderr, flush=True)
            failed += 1
            continue
        if not np.isfinite(tl.scores).all():
            print(f'error: {path}: the model gave non-finite scores',
                  file=sys.stderr, flush=True)
            failed += 1
            continue
        tl, events = timeline_events(tl, on, off, cfg.detect, classes)
        write_outputs(cfg.detect_dir, name, tl, events, cfg.plot)
        for e in events:
            print(format_event(path, e))
        print(summary(tl, events), flush=True)
    return 1 if failed else 0


def detect_live(cfg):
    """stdin or the microphone: each event printed and appended to
    ``<name>.events.csv`` and ``.labels.txt`` (flushed) when it closes;
    at the end all outputs are written as for a file (events sorted)."""
    if cfg.live:
        sd = open_microphone()  # before the model: a missing one fails fast
        path = name = 'live'
    else:
        path, name = '-', 'stdin'
    model = open_for(cfg)
    sr = model.feature.sample_rate
    chunks = record(sd, sr) if cfg.live else pcm_chunks(
        sys.stdin.buffer, cfg.pcm_format, cfg.pcm_channels)
    detector = LiveDetector(
        model.scores, model.labels, sr, windowing(cfg, model),
        cfg.pcm_sample_rate or sr, cfg.threshold, cfg.threshold_off,
        cfg.min_event_seconds, cfg.merge_gap_seconds, cfg.top_k_per_window,
        class_columns(cfg.classes, model.labels), model.meta.thresholds,
        batch_size=1, keep=True)
    out, events = Path(cfg.detect_dir), []
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f'{name}.events.csv', 'w', newline='') as table, \
            open(out / f'{name}.labels.txt', 'w') as track:
        table.write(','.join(CSV_HEADER) + '\n')
        table.flush()

        def report(changes):
            for state, e in changes:
                if state == 'close':
                    events.append(e)
                    print(format_event(path, e), flush=True)
                    table.write(csv_row(e, path))
                    table.flush()
                    track.write(audacity_labels([e]))
                    track.flush()

        try:
            for chunk in chunks:
                for step in detector.push(chunk):
                    report(step.events)
            steps, closing = detector.end()
        except ValueError as e:
            raise UserError(f'{path}: {e}') from None
        for step in steps:
            report(step.events)
        report(closing)
    if not detector.kept:
        raise UserError(f'{path}: no audio arrived')
    tl = detector.timeline(path)
    events.sort(key=lambda e: (e.onset, e.offset, e.label))
    write_outputs(out, name, tl, events, cfg.plot)
    print(summary(tl, events), flush=True)
    return 0


if __name__ == '__main__':
    run(main)
