"""Plots: optional VisualDL scalars while training, a PNG of loss and
accuracy per evaluated epoch drawn from ``metrics.jsonl`` (so it covers
resumed runs whole), and the cross-validation confusion matrix."""
import numpy as np

from .errors import UserError


class VisualDLLog:
    """Scalars for ``visualdl --logdir DIR``. VisualDL (Flask, pandas, ...)
    is imported only when asked for, so it is not a dependency of the
    recipe."""

    def __init__(self, logdir):
        try:
            from visualdl import LogWriter
        except ImportError as e:
            raise UserError(f'--visualdl_dir needs VisualDL, which is not '
                            f'installed ({e}): pip install visualdl') from e
        self.writer = LogWriter(logdir=str(logdir))

    def scalars(self, prefix, values, step):
        for name, value in values.items():
            self.writer.add_scalar(f'{prefix}/{name}', float(value), step)

    def close(self):
        self.writer.close()


def plot_curves(records, path, score='acc'):
    """Loss (train, dev) and the dev score (:attr:`..task.Task.score`:
    accuracy with the training accuracy and dev top-5, or mAP) against the
    epoch."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    epochs = [r['epoch'] for r in records]
    fig, (loss, acc) = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, kind in ((loss, 'loss'), (acc, score)):
        for split, style in (('train', 'o--'), ('dev', 'o-')):
            if records and f'{split}_{kind}' not in records[0]:
                continue  # no training mAP
            ax.plot(epochs, [r[f'{split}_{kind}'] for r in records], style,
                    label=split)
        ax.set_xlabel('epoch')
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title({'loss': 'loss', 'acc': 'accuracy', 'map': 'mAP'}[kind])
        ax.grid(alpha=0.3)
        ax.legend()
    if records and 'dev_top5' in records[0]:
        acc.plot(epochs, [r['dev_top5'] for r in records], 'o:',
                 label='dev top-5')
        acc.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(conf, labels, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    size = max(4, 0.25 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(conf, cmap='Blues')
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel('predicted')
    ax.set_ylabel('true')
    ax.set_title('confusion matrix, summed over folds')
    if len(labels) <= 15:
        for (t, p), n in np.ndenumerate(conf):
            ax.text(p, t, int(n), ha='center', va='center', fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
