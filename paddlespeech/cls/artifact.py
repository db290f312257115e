"""The model artifact: an export directory's files and its ``model.json``,
read and written without Paddle or the models.

``inference.json`` (Paddle 3 PIR; ``inference.pdmodel`` from older Paddle)
+ ``inference.pdiparams``, or ``model.onnx``, hold the graph;
``model.json`` (:class:`ExportMeta`) holds what using it correctly needs.
The exporter writes it, the quantiser amends it, and the predictor, the
service and the tools read it: one typed schema for all of them, so a
process that only needs to know what a model is (the HTTP server, an
archive scan) never loads Paddle. An export without ``model.json``
(upstream PaddleSpeech's ``export_model.py``) is read as
:func:`upstream_meta` describes.
"""
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from . import atomic
from .errors import UserError
from .features import FeatureConfig
from .logs import get_logger
from .task import Task

log = get_logger(__name__)

GRAPH_PREFIX = 'inference'
META_FILE = 'model.json'
ONNX_FILE = 'model.onnx'
# --format -> the backend that runs it, and back
FORMATS = {'paddle': 'paddle', 'onnx': 'onnxruntime'}
BACKENDS = {b: f for f, b in FORMATS.items()}
EXPORT_FILES = (f'{GRAPH_PREFIX}.json', f'{GRAPH_PREFIX}.pdmodel',
                f'{GRAPH_PREFIX}.pdiparams', ONNX_FILE, META_FILE)
INPUTS = ('logmel', 'waveform')
PRECISIONS = ('fp32', 'int8', 'bf16')
# 1: the first versioned schema; files without ``version`` read as 1.
# 2: ``embedding_size``: the graph has a second output, the embedding.
SCHEMA_VERSION = 2


@dataclass
class ExportConfig:
    """The ``export:`` section: what ``export_model.py`` writes and where
    the prediction tools find it (``export_dir``); ``format`` and
    ``precision`` are ``export_format`` and ``export_precision`` in flat
    files."""
    FLAT = {'format': 'export_format', 'precision': 'export_precision'}
    export_dir: str = './export'
    include_frontend: bool = False  # the exported graph takes waveforms
    format: str = 'paddle'  # paddle | onnx
    quantize: Optional[str] = None  # int8: post-training static quantisation
    precision: str = 'fp32'  # fp32 | bf16
    calib_data: Optional[str] = None  # None: the training folds of data_dir
    calib_clips: int = 200  # calibration clips (classes take turns)
    check_data: Optional[str] = None  # None: the dev fold of data_dir
    # points of dev score a low-precision export may lose
    max_drop: float = 1.0
    force: bool = False  # write it even if it loses more


@dataclass
class ExportMeta:
    """``model.json``. ``input``: ``logmel`` ``[batch, frames, n_mels]``,
    or ``waveform`` ``[batch, samples]`` with the front end inside the
    graph; ``logits``: the graph ends in logits (upstream's), to which the
    predictor applies softmax; ``clip_seconds``: the clip length the model
    was trained on (its windowing, :class:`..audio.Windowing`; None for
    upstream exports); ``calibration`` and ``accuracy_check``: what an
    INT8/BF16 export was calibrated and checked on; ``thresholds``:
    per-class decision thresholds, where calibrated; ``embedding_size``:
    the graph's second output is the backbone's embedding of this size
    (None: scores only, as exports of schema 1 and upstream's);
    ``extra``: keys of a newer schema, kept when the file is rewritten."""
    label_list: List[str]
    feature: FeatureConfig = field(default_factory=FeatureConfig)
    input: str = 'logmel'
    backbone: Optional[str] = None
    multi_label: bool = False
    clip_seconds: Optional[float] = None
    backend: str = 'paddle'
    precision: str = 'fp32'
    logits: bool = False
    checkpoint: Optional[str] = None
    calibration: Optional[dict] = None
    accuracy_check: Optional[dict] = None
    thresholds: Optional[dict] = None
    embedding_size: Optional[int] = None
    version: int = SCHEMA_VERSION
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.input not in INPUTS:
            raise ValueError(f'input must be one of {INPUTS}, got '
                             f'{self.input!r}')
        if self.backend not in BACKENDS:
            raise ValueError(f'backend must be one of {sorted(BACKENDS)}, '
                             f'got {self.backend!r}')
        if self.precision not in PRECISIONS:
            raise ValueError(f'precision must be one of {PRECISIONS}, got '
                             f'{self.precision!r}')

    @property
    def task(self):
        return Task(self.multi_label)

    @property
    def takes_waveform(self):
        return self.input == 'waveform'

    def to_dict(self):
        """The JSON object, keys of unset optional fields left out."""
        d = {'version': self.version, 'input': self.input,
             'label_list': list(self.label_list),
             'feature': self.feature.to_dict()}
        for f in dataclasses.fields(self):
            if f.name in d or f.name == 'extra':
                continue
            value = getattr(self, f.name)
            if value is not None and value is not False:
                d[f.name] = value
        return {**d, **self.extra}

    @classmethod
    def from_dict(cls, d, source=META_FILE):
        """Typed fields from a ``model.json`` object; keys this version
        does not know go to :attr:`extra`. A malformed file is a
        :class:`..errors.UserError` naming ``source``."""
        names = {f.name for f in dataclasses.fields(cls)} - {'extra'}
        known = {'version': 1, **{k: v for k, v in d.items() if k in names}}
        try:
            known['feature'] = FeatureConfig.from_dict(d.get('feature', {}))
            return cls(**known, extra={k: v for k, v in d.items()
                                       if k not in names})
        except (TypeError, ValueError) as e:
            raise UserError(f'{source} is not a valid export description '
                            f'({e}); export the checkpoint again') from e

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def read_meta(model_dir):
    """The :class:`ExportMeta` of ``model_dir``, or None where it has no
    ``model.json``."""
    path = Path(model_dir) / META_FILE
    if not path.is_file():
        return None
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f'cannot read {path} ({e}); export the checkpoint '
                        f'again') from e
    return ExportMeta.from_dict(d, path)


def write_meta(folder, meta):
    """``model.json`` in ``folder``, written atomically."""
    atomic.write_text(Path(folder) / META_FILE,
                      json.dumps(meta.to_dict(), indent=2))


def graph_files(model_dir, meta):
    """``(graph, params)`` of the export in ``model_dir`` (``params`` None
    for ONNX); a one-line error naming the missing file and the fix."""
    model_dir = Path(model_dir)
    if meta is not None and meta.backend == 'onnxruntime':
        if not (model_dir / ONNX_FILE).is_file():
            raise UserError(f'export directory {model_dir} is incomplete: '
                            f'missing {model_dir / ONNX_FILE} (run '
                            f'export_model.py --format onnx --output_dir '
                            f'{model_dir})')
        return model_dir / ONNX_FILE, None
    params = model_dir / f'{GRAPH_PREFIX}.pdiparams'
    graphs = [model_dir / f'{GRAPH_PREFIX}{s}' for s in ('.json', '.pdmodel')]
    graph = next((g for g in graphs if g.is_file()), graphs[0])
    missing = [str(p) for p in (graph, params) if not p.is_file()]
    if missing:
        from .checkpoint import checkpoint_file_of
        ckpt = checkpoint_file_of(model_dir)
        if ckpt is not None:
            raise UserError(
                f'{model_dir} is a training checkpoint, not an export: '
                f'export it with export_model.py --checkpoint {ckpt} '
                f'--output_dir <new dir> and pass that dir, or predict with '
                f'predict.py --checkpoint {ckpt}')
        raise UserError(f'export directory {model_dir} is incomplete: missing '
                        f'{", ".join(missing)} (run export_model.py '
                        f'--output_dir {model_dir})')
    return graph, params


def read_export(model_dir, label_file=None):
    """``(graph_path, params_path, ExportMeta)``; an export without
    ``model.json`` is read as :func:`upstream_meta` says."""
    meta = read_meta(model_dir)
    graph, params = graph_files(model_dir, meta)
    if meta is None:
        meta = upstream_meta(model_dir, graph, label_file)
    return graph, params, meta


def upstream_meta(model_dir, graph, label_file=None):
    """What an export without ``model.json`` (upstream PaddleSpeech's
    ``export_model.py``: log-mel input, default front end) needs: the label
    names of ``label_file``, else ESC-50's, and whether the graph ends in
    logits (upstream's does). Says on stderr what it assumed."""
    from .datasets import ESC50_LABELS, read_label_file
    labels = read_label_file(label_file) if label_file else \
        list(ESC50_LABELS)
    logits = graph_activation(graph) is None
    log.warning(
        f'note: {model_dir} has no {META_FILE} (an upstream PaddleSpeech '
        f'export?): read as log-mel input with the default front end, '
        f'classes named {f"from {label_file}" if label_file else "as ESC-50"}'
        f'{", softmax applied to its logits" if logits else ""}')
    return ExportMeta(label_list=labels, logits=logits)


def graph_activation(graph):
    """``softmax`` or ``sigmoid`` when the graph's last operation (before
    its output) is one, else None (the graph outputs logits). Reading an
    older ``.pdmodel`` needs Paddle's protobuf classes."""
    graph = Path(graph)
    if graph.suffix == '.json':  # Paddle 3 PIR: ops named '1.<op>'
        blocks = json.loads(graph.read_text())['program']['regions'][0][
            'blocks']
        ops = [op['#'].rpartition('.')[2] for op in blocks[0]['ops']]
    else:
        from paddle.base.proto import framework_pb2
        program = framework_pb2.ProgramDesc.FromString(graph.read_bytes())
        ops = [op.type for op in program.blocks[0].ops]
    ops = [op for op in ops if op not in ('fetch', 'scale')]
    return ops[-1] if ops and ops[-1] in ('softmax', 'sigmoid') else None


def is_export(path):
    """Whether ``path`` is a directory holding an export's files."""
    p = Path(path)
    return p.is_dir() and any((p / name).is_file() for name in EXPORT_FILES)
