"""``paddlespeech-cls COMMAND [flags]``: the recipe's scripts under one
command. Each command is its script in ``exps/panns/``, with the same flags
and ``--help``; the scripts also run on their own from a checkout."""
import difflib
import importlib
import sys

from .runtime import prepare_process, run

COMMANDS = {  # command: (module in exps/panns, what it does)
    'train': ('train', 'fine-tune a PANNs backbone on a dataset'),
    'predict': ('predict', 'classify audio files with a checkpoint'),
    'export': ('export_model', 'export a checkpoint for deployment (Paddle '
               'or ONNX)'),
    'deploy': ('deploy.predict', 'classify audio files with an export'),
    'serve': ('deploy.serve', 'serve an export over HTTP'),
    'stream': ('deploy.stream_client', 'stream a file or stdin to the '
               'service\'s /v1/stream and print its messages'),
    'detect': ('detect', 'find when sounds occur in long recordings'),
    'calibrate': ('calibrate', 'per-class thresholds for a target '
                  'precision, stored in the model'),
    'analyze': ('analyze', 'tags, events and embeddings of whole archives '
                'into Parquet, resumable'),
    'tag': ('tag', 'tag audio files with the 527 AudioSet classes'),
    'search': ('search', 'find the windows of an analysed archive most '
               'like a query clip'),
    'review': ('review', 'a review page of detected events (or any '
               'candidates)'),
    'synth': ('synth', 'write the synthetic demo data (or a long '
              'recording)'),
    'convert': ('convert', 'convert a PyTorch PANNs checkpoint to Paddle '
                'weights'),
}
PROG = 'paddlespeech-cls'


def usage():
    width = max(map(len, COMMANDS))
    return '\n'.join(
        [f'usage: {PROG} COMMAND [flags]', '', 'commands:'] +
        [f'  {name:<{width}}  {line}' for name, (_, line) in COMMANDS.items()]
        + ['', f'{PROG} COMMAND --help lists the flags of COMMAND.'])


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ('-h', '--help'):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    name, *rest = argv
    if name not in COMMANDS:
        near = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f"; did you mean '{near[0]}'?" if near else ''
        print(f"error: unknown command '{name}'{hint} (commands: "
              f"{', '.join(COMMANDS)})", file=sys.stderr)
        return 2
    prepare_process()
    script = importlib.import_module(
        f'paddlespeech.cls.exps.panns.{COMMANDS[name][0]}')
    sys.argv[0] = f'{PROG} {name}'  # argparse names the command in --help
    run(script.main, rest)

