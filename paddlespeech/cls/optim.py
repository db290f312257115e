"""The optimisation step's parts: the learning-rate schedule (and how it
survives a resume with other settings), mixed precision, a frozen
backbone."""
import contextlib
import warnings

import paddle

LR_SCHEDULES = ('constant', 'cosine', 'step')
AMP_MODES = ('off', 'fp16', 'bf16')


def build_lr(learning_rate, schedule, epochs, steps_per_epoch,
             warmup_epochs=0, step_epochs=10, gamma=0.1):
    """A float (constant) or a per-step ``paddle.optimizer.lr`` scheduler.

    ``cosine`` decays to 0 over the run; ``step`` multiplies the rate by
    ``gamma`` every ``step_epochs`` epochs; ``warmup_epochs`` ramps
    linearly from 0 first (the decay counts from its end). Scheduler state
    is part of the optimizer's state dict, so resuming continues the
    schedule.
    """
    if schedule not in LR_SCHEDULES:
        raise ValueError(f'lr_schedule must be one of {LR_SCHEDULES}, got '
                         f'{schedule!r}')
    warmup = int(warmup_epochs * steps_per_epoch)
    if schedule == 'constant' and not warmup:
        return learning_rate
    lr = learning_rate
    if schedule == 'cosine':
        lr = paddle.optimizer.lr.CosineAnnealingDecay(
            learning_rate, T_max=max(epochs * steps_per_epoch - warmup, 1))
    elif schedule == 'step':
        lr = paddle.optimizer.lr.StepDecay(
            learning_rate, step_size=max(int(step_epochs * steps_per_epoch),
                                         1), gamma=gamma)
    if warmup:
        lr = paddle.optimizer.lr.LinearWarmup(lr, warmup, 0.0, learning_rate)
    return lr


def lr_plan(train, steps_per_epoch):
    """The settings of the ``train:`` section that shape the learning-rate
    schedule; a checkpoint records them so ``--resume`` with other ones
    (say more ``epochs``) rebuilds the schedule instead of continuing the
    old one."""
    plan = {'lr_schedule': train.lr_schedule,
            'learning_rate': train.learning_rate,
            'warmup_epochs': train.warmup_epochs}
    if train.lr_schedule == 'cosine':
        plan['epochs'] = train.epochs
    elif train.lr_schedule == 'step':
        plan.update(lr_step_epochs=train.lr_step_epochs,
                    lr_gamma=train.lr_gamma)
    if train.lr_schedule != 'constant' or train.warmup_epochs:
        plan['steps_per_epoch'] = steps_per_epoch
    return plan


class Schedule:
    """The learning-rate schedule of the ``train:`` section over
    ``steps_per_epoch``: :attr:`lr` for the optimizer, :attr:`scheduler`
    (None when constant), and its :attr:`plan`, which a checkpoint records
    (``lr_plan``). Resumed under another plan, the optimizer's state
    continues the schedule of the current settings at the step count
    reached (:meth:`load_optimizer`)."""

    def __init__(self, train, steps_per_epoch):
        self.lr = build_lr(train.learning_rate, train.lr_schedule,
                           train.epochs, steps_per_epoch, train.warmup_epochs,
                           train.lr_step_epochs, train.lr_gamma)
        self.scheduler = (self.lr if isinstance(
            self.lr, paddle.optimizer.lr.LRScheduler) else None)
        self.plan = lr_plan(train, steps_per_epoch)
        self.name = train.lr_schedule
        self.total = train.epochs * steps_per_epoch
        self.saved = self.plan

    def state_dict(self):
        return self.plan

    def set_state_dict(self, saved):
        """The plan a checkpoint recorded (None: before plans were)."""
        self.saved = saved

    @property
    def replanned(self):
        return self.saved != self.plan

    def load_optimizer(self, optimizer, state, steps_done):
        """Restore ``optimizer`` from ``state``, with the schedule of the
        current settings at its step when :attr:`replanned` (the saved
        one was planned for other settings: more epochs, another rate or
        shape; ``steps_done`` counts the steps when it holds no
        schedule)."""
        if self.replanned:
            state = dict(state)
            saved = state.pop('LR_Scheduler', None)
            if self.scheduler is not None:
                done = saved['last_epoch'] if saved is not None else \
                    steps_done
                self.scheduler.step(done)  # with an epoch: the closed form
                state['LR_Scheduler'] = self.scheduler.state_dict()
        with warnings.catch_warnings():
            # Paddle's LinearWarmup counts its inner schedule's entry as
            # unused on every restore
            warnings.filterwarnings('ignore', 'There are some unused values')
            optimizer.set_state_dict(state)

    def describe_change(self, lr):
        """The ``[resume]`` line of a replanned schedule, now at ``lr``."""
        saved = self.saved
        if saved is None:
            why = 'the checkpoint records no schedule'
        else:
            why = ', '.join(f'{k} {saved.get(k)} -> {v}' for k, v in
                            self.plan.items() if saved.get(k) != v)
        done = self.scheduler.last_epoch if self.scheduler else None
        at = f' at step {done} of {self.total}' if done is not None else ''
        return (f'[resume] learning-rate schedule changed ({why}): '
                f'continuing the {self.name} schedule of these settings'
                f'{at}, lr {lr:.3e}')


class MixedPrecision:
    """``paddle.amp`` O1 autocast for the forward pass and, for fp16, a
    dynamic loss scaler; ``off`` is plain fp32 (the exact former code
    path). Its state (the loss scale) is saved for resuming."""

    def __init__(self, mode='off'):
        if mode not in AMP_MODES:
            raise ValueError(f'amp must be one of {AMP_MODES}, got {mode!r}')
        self.mode = mode
        self.scaler = (paddle.amp.GradScaler(init_loss_scaling=2.0 ** 15)
                       if mode == 'fp16' else None)

    def autocast(self):
        if self.mode == 'off':
            return contextlib.nullcontext()
        return paddle.amp.auto_cast(level='O1', dtype={
            'fp16': 'float16', 'bf16': 'bfloat16'}[self.mode])

    def step(self, loss, optimizer):
        """Backward pass and optimizer step (unscaled, skipped on inf/NaN
        gradients under fp16)."""
        if self.scaler is None:
            loss.backward()
            optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()
        optimizer.clear_grad()

    def state_dict(self):
        return self.scaler.state_dict() if self.scaler is not None else {}

    def set_state_dict(self, state):
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def freeze(layer, frozen=True):
    """Stop (or restore) gradients into ``layer``'s parameters; the
    optimizer skips parameters without gradients, so they stay exactly as
    they are. Put the layer in eval mode too (:meth:`Trainer.train_epoch`
    does) so its BatchNorm statistics stay as well."""
    for p in layer.parameters():
        p.stop_gradient = frozen
