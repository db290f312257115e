"""One call opens any model: ``open_model(checkpoint=… | model_dir=… |
arch=…)`` gives a :class:`..scoring.SoundModel` (``scores``,
``embeddings``, ``labels``, ``feature``, ``meta``…) whichever kind it is.
Also ``from paddlespeech.cls import open_model``."""
import os

from .errors import UserError

MODEL_FLAGS_HELP = {
    'checkpoint': 'model.pdparams written by train.py',
    'model_dir': 'an export (export_model.py): the fast path',
    'pretrained': 'the 527 AudioSet classes with the pretrained tagger of '
                  '--arch (downloaded once)',
    'arch': 'with --pretrained: the PANNs architecture',
    'pretrained_path': 'with --pretrained: AudioSet weights (.pdparams, '
                       'e.g. from the converter) instead of the download',
}


def add_model_flags(p, backbones, label_file_help):
    """The flags of a tool that takes any model (``detect.py``,
    ``analyze.py``): one of ``--checkpoint``, ``--model_dir``,
    ``--pretrained`` (with ``--arch``, ``--pretrained_path``), and
    ``--label_file``; read back by :func:`model_kwargs`."""
    h = MODEL_FLAGS_HELP
    p.add('--checkpoint', help=h['checkpoint'])
    p.add('--model_dir', key='detect_model_dir', help=h['model_dir'])
    p.add('--pretrained', key='audioset', action='store_true',
          help=h['pretrained'])
    p.add('--arch', key='tag_arch', choices=sorted(backbones),
          help=h['arch'])
    p.add('--pretrained_path', help=h['pretrained_path'])
    p.add('--label_file', help=label_file_help)


def model_kwargs(runtime, predict, detect, model, absolute=False):
    """:func:`open_model`'s arguments from the sections
    :func:`add_model_flags`' flags set (and the ``runtime:`` section's
    device, threads and front end); refuses anything but exactly one
    model in one line. ``absolute``: paths made absolute, for other
    processes and nodes to open the same model."""
    checkpoint, model_dir, pretrained = predict.checkpoint, \
        detect.model_dir, detect.pretrained
    arch, pretrained_path, label_file = predict.arch, \
        model.pretrained_path, predict.label_file
    given = [f for f, v in (('--checkpoint', checkpoint),
                            ('--model_dir', model_dir),
                            ('--pretrained', pretrained)) if v]
    if len(given) != 1:
        raise UserError('give exactly one model: --checkpoint, --model_dir '
                        f'or --pretrained (got {", ".join(given) or "none"})')

    def path(p):
        return os.path.abspath(p) if p and absolute else p or None
    return {'checkpoint': path(checkpoint), 'model_dir': path(model_dir),
            'arch': arch if pretrained else None,
            'pretrained': path(pretrained_path) if pretrained else None,
            'device': runtime.device, 'cpu_threads': runtime.cpu_threads,
            'label_file': path(label_file),
            'feat_backend': runtime.feat_backend}


def open_model(checkpoint=None, model_dir=None, arch=None, pretrained=None,
               *, device=None, cpu_threads=None, label_file=None,
               backbone=None, feat_backend='numpy', isolated=False,
               **export_options):
    """Exactly one of:

    - ``checkpoint``: a ``train.py`` checkpoint (``best/``, ``epoch_N/``,
      ``model.pdparams``) or upstream PaddleSpeech's, through the dynamic
      graph (``backbone``: only checked against it; ``feat_backend``: the
      front end's, ``numpy`` or ``paddle``);
    - ``model_dir``: an export (Paddle or ONNX, fp32, INT8 or BF16;
      ``export_options``: :class:`..inference.Predictor`'s, e.g.
      ``enable_mkldnn``, ``backend``);
    - ``arch``: the AudioSet tagger of ``cnn14``/``cnn10``/``cnn6`` with
      the weights file ``pretrained`` (None: the pretrained download).

    ``device``: ``cpu``, ``gpu`` or ``gpu:N`` (None: a GPU if there is
    one); ``cpu_threads``: threads of its CPU kernels (None: all cores);
    ``label_file``: class names of a model without metadata.
    ``isolated``: the model runs in a child process
    (:class:`..serving.process.ProcessPredictor`): the caller's process
    never loads Paddle, and the child's death is an exception, not the
    caller's.
    """
    given = [name for name, value in (('checkpoint', checkpoint),
                                      ('model_dir', model_dir),
                                      ('arch', arch)) if value]
    if len(given) != 1:
        raise UserError(f'open_model needs exactly one of checkpoint, '
                        f'model_dir or arch; got {given or "none"}')
    if pretrained is not None and not arch:
        raise UserError('pretrained weights go with arch (the AudioSet '
                        'tagger); a checkpoint or an export holds its own')
    if isolated:
        from .serving.process import ProcessPredictor
        return ProcessPredictor(
            checkpoint=checkpoint, model_dir=model_dir, arch=arch,
            pretrained=pretrained, device=device, cpu_threads=cpu_threads,
            label_file=label_file, backbone=backbone,
            feat_backend=feat_backend, **export_options)
    from .runtime import select_device, set_cpu_threads
    device = select_device(device)
    if model_dir:
        from .inference import Predictor
        return Predictor(model_dir, device, cpu_threads,
                         label_file=label_file, **export_options)
    if export_options:
        raise UserError(f'{sorted(export_options)} apply to exports '
                        f'(model_dir) only')
    set_cpu_threads(cpu_threads)
    from .scoring import CheckpointModel, TaggerModel
    if checkpoint:
        return CheckpointModel(checkpoint, backbone, label_file, feat_backend)
    return TaggerModel(arch, pretrained, feat_backend)
