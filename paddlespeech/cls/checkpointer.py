"""Training state that saves itself.

The trainer registers each piece of its state with a :class:`Checkpointer`
(the model, the optimizer, :class:`Progress`, :class:`BestTracker`, the
loss scaler, the learning-rate schedule, :class:`RandomState`), saying how
it saves and loads itself, as in SpeechBrain's
``Checkpointer.add_recoverable`` / ``recover_if_possible``; one
:meth:`Checkpointer.save` then writes all of it and one
:meth:`Checkpointer.recover_if_possible` restores all of it, so a new piece
of state is one more registration, not another edit of save and resume.
The files are those of :mod:`.checkpoint`: the model in
``model.pdparams``, the optimizer and a ``train_state`` dict (one entry per
piece) in ``model.pdopt``.
"""
import random
from dataclasses import asdict, dataclass

import numpy as np

from .checkpoint import (CheckpointError, load_checkpoint, resume_point,
                         same_model, save_checkpoint)


class Checkpointer:
    """The checkpoints of one run in ``directory`` (:mod:`.checkpoint`
    layout), of a model described by ``meta``
    (:func:`.checkpoint.model_meta`)."""

    def __init__(self, directory, meta):
        self.directory, self.meta = directory, meta
        self.recoverables = {}

    def add_recoverable(self, name, obj=None, save=None, load=None,
                        flat=False):
        """Register ``obj`` under ``name``: saved as ``save()`` (default
        ``obj.state_dict()``), restored with ``load(state)`` (default
        ``obj.set_state_dict``, else ``obj.load_state_dict``), which gets
        None from a checkpoint written before ``name`` was. ``model`` and
        ``optimizer`` are the two files' own entries; a ``flat`` state (a
        dict) spreads its keys over ``train_state``, as checkpoints have
        always held progress and random state, and its ``load`` gets all of
        ``train_state``. Restored in the order registered."""
        save = save or obj.state_dict
        load = load or getattr(obj, 'set_state_dict', None) or \
            obj.load_state_dict
        self.recoverables[name] = (save, load, flat)

    def save(self, epoch, step=None, **extra):
        """Write ``epoch_<epoch>/`` (``epoch_<epoch>_step_<step>/``) with
        every registered state and ``extra`` in ``train_state``; returns
        its path."""
        states = {name: save() for name, (save, _, _) in
                  self.recoverables.items()}
        model, optimizer = states.pop('model'), states.pop('optimizer', None)
        train_state = {}
        for name, state in states.items():
            if self.recoverables[name][2]:
                train_state.update(state)
            else:
                train_state[name] = state
        train_state.update(extra)
        return save_checkpoint(self.directory, epoch, model, self.meta,
                               optimizer, train_state, step=step)

    def recover_if_possible(self):
        """Restore every registered state from the furthest checkpoint
        (:func:`.checkpoint.resume_point`); returns ``(its path, its
        train_state)``, or None when there is none. A checkpoint of another
        model (backbone, labels, task, features) is refused."""
        import paddle
        latest = resume_point(self.directory)
        if latest is None:
            return None
        model, saved_meta = load_checkpoint(latest)
        if not same_model(saved_meta, self.meta):
            raise CheckpointError(
                f'{latest} was trained with other settings (backbone, '
                f'labels, single/multi-label or features) than this run; '
                f'use another --checkpoint_dir')
        saved = paddle.load(str(latest / 'model.pdopt'))
        train_state = saved['train_state']
        for name, (_, load, flat) in self.recoverables.items():
            load(model if name == 'model' else
                 saved['optimizer'] if name == 'optimizer' else
                 train_state if flat else train_state.get(name))
        return latest, train_state


@dataclass
class Progress:
    """Where training stands in the current epoch, and its running sums:
    what an interrupt saves and ``--resume`` restores."""
    epoch: int
    step: int = 0
    loss_sum: float = 0.0
    correct: float = 0.0
    seen: int = 0

    def start(self, epoch):
        """Begin ``epoch`` unless it is the one under way (resumed)."""
        if epoch != self.epoch:
            self.__init__(epoch)

    def state_dict(self):
        return asdict(self)

    def set_state_dict(self, state):
        """Continue after ``state``: with the next epoch when it was saved
        at an epoch's end (``complete``, or older checkpoints without a
        step), else at its step."""
        if self.completed(state):
            self.__init__(state['epoch'] + 1)
        else:
            self.__init__(**{k: state[k] for k in asdict(Progress(0))})

    @staticmethod
    def completed(state):
        """Whether ``state`` was saved at the end of its epoch."""
        return state.get('complete', 'step' not in state)

    def steps_done(self, steps_per_epoch):
        """Optimizer steps since the run began."""
        return (self.epoch - 1) * steps_per_epoch + self.step


class BestTracker:
    """Best dev score so far (:attr:`Task.score`: accuracy, or mAP for
    multi-label data), its epoch, and the evaluations since it last
    improved (early stopping). Saved in every checkpoint so a resumed run
    keeps selecting and counting where the interrupted one was."""

    def __init__(self, patience=0):
        self.patience = patience
        self.epoch, self.score, self.bad_evals = None, -1.0, 0

    def update(self, epoch, score):
        """Record an evaluation; True when it is a new best (ties keep the
        earlier epoch)."""
        if score > self.score:
            self.epoch, self.score, self.bad_evals = epoch, score, 0
            return True
        self.bad_evals += 1
        return False

    @property
    def should_stop(self):
        return bool(self.patience) and self.bad_evals >= self.patience

    def state_dict(self):
        return {'epoch': self.epoch, 'score': self.score,
                'bad_evals': self.bad_evals}

    def load_state_dict(self, state):
        """Restore; None (a checkpoint from before best tracking) keeps
        the fresh state. Older checkpoints name the score ``dev_acc``."""
        if state:
            self.epoch, self.bad_evals = state['epoch'], state['bad_evals']
            self.score = state.get('score', state.get('dev_acc'))


class RandomState:
    """Python's, numpy's and Paddle's generators: restored, a resumed run
    draws the same crops, mixes and dropout masks as an uninterrupted
    one."""

    @staticmethod
    def seed(seed):
        import paddle
        random.seed(seed)
        np.random.seed(seed)
        paddle.seed(seed)

    def state_dict(self):
        import paddle
        return {'python_rng': random.getstate(),
                'numpy_rng': np.random.get_state(),
                'paddle_rng': paddle.get_rng_state()}

    def set_state_dict(self, state):
        import paddle
        random.setstate(state['python_rng'])
        np.random.set_state(state['numpy_rng'])
        paddle.set_rng_state(state['paddle_rng'])
