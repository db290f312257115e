"""The ``train:`` section: the settings of :class:`.trainer.Trainer` and of
cross-validation (:mod:`.crossval`). It lives beside the trainer rather
than in it because the trainer imports Paddle and reading a configuration
must not (as Hugging Face keeps ``TrainingArguments`` apart from
``Trainer``)."""
from dataclasses import dataclass
from typing import Optional, Union


@dataclass
class TrainConfig:
    epochs: int = 50
    learning_rate: float = 5e-5
    lr_schedule: str = 'constant'  # constant | cosine | step
    warmup_epochs: float = 0
    lr_step_epochs: float = 10  # step: multiply by lr_gamma every N epochs
    lr_gamma: float = 0.1
    freeze_backbone_epochs: int = 0  # train only the head at first
    head_only: bool = False  # the head alone, on cached backbone embeddings
    # head-only: augmented copies of each training window (the augment:
    # section, mixup aside), embedded and cached once each
    embed_augment: int = 0
    # evaluations without a better dev score; 0: off
    early_stop_patience: int = 0
    average_last: int = 0  # average the last N epoch checkpoints into avg_N/
    # last N epoch_N/ kept (>= average_last); 0: all
    keep_checkpoint_max: int = 0
    amp: str = 'off'  # off | fp16 | bf16 (GPU only)
    visualdl_dir: Optional[str] = None  # VisualDL log directory; None: none
    batch_size: int = 16  # clips per training step (per process)
    num_workers: int = 0
    checkpoint_dir: str = './checkpoint'
    save_freq: int = 10
    log_freq: int = 10
    seed: int = 0
    resume: bool = False  # continue from the furthest checkpoint
    # cross-validation (stage 5)
    folds: Optional[Union[str, int]] = None  # e.g. '1,3'; None: every fold
    cv_dir: Optional[str] = None  # None: <checkpoint_dir>/../cv
