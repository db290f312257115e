"""Train as train.py does, under paddle.distributed.launch, and save this
rank's final parameters to ``$DDP_OUT/rank<N>.pdparams`` for comparison."""
import os
import sys

from paddlespeech.cls.runtime import prepare_process

prepare_process()

import paddle
import paddle.distributed as dist

from paddlespeech.cls.config import load_config
from paddlespeech.cls.trainer import Trainer

config, *pairs = sys.argv[1:]
overrides = dict(zip(pairs[::2], pairs[1::2]))
cfg = load_config(config, {k: (int(v) if v.isdigit() else v)
                           for k, v in overrides.items()})
trainer = Trainer(cfg)
assert trainer.fit() == 0
paddle.save(trainer.model.state_dict(),
            os.path.join(os.environ['DDP_OUT'],
                         f'rank{dist.get_rank()}.pdparams'))
