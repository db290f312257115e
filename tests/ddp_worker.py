"""Run train.py's main() under paddle.distributed.launch and save this
rank's final parameters to ``$DDP_OUT/rank<N>.pdparams`` for comparison."""
import os
import sys

import paddlespeech.cls  # noqa: F401
import paddle
import paddle.distributed as dist

from paddlespeech.cls.exps.panns import train

models = []
build = train.build_classifier


def capture(*args, **kw):
    models.append(build(*args, **kw))
    return models[-1]


train.build_classifier = capture
train.main(sys.argv[1:])
paddle.save(models[0].state_dict(),
            os.path.join(os.environ['DDP_OUT'], f'rank{dist.get_rank()}.pdparams'))
