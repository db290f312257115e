"""Stream a file or stdin to the service's WebSocket /v1/stream and print
its messages (one JSON line each: scores per window, events as they open
and close).

    python deploy/stream_client.py --url ws://127.0.0.1:8090/v1/stream \
        --wav recording.wav
    ffmpeg -i rtsp://... -f s16le -ac 1 -ar 32000 - | python \
        deploy/stream_client.py --wav - --sample_rate 32000

Audio goes out at real-time pace (--speed 2: twice as fast; 0: as fast as
the server takes it) in --chunk_seconds pieces; at the end the client
asks for the last windows and the closing events and waits for them.
A file is sent as its own samples (16-bit PCM, else 32-bit float) at its
own rate and channels: the server resamples and mixes down as detect.py
reads files. The exit status is 0
when the server closed the stream normally.
"""
import argparse
import json
import sys
import threading
import time

import numpy as np

from paddlespeech.cls.errors import UserError
from paddlespeech.cls.runtime import run

FORMATS = ('s16le', 'f32le')


def get_parser():
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--url', default='ws://127.0.0.1:8090/v1/stream')
    p.add_argument('--wav', required=True,
                   help='an audio file, or - for raw PCM on stdin')
    p.add_argument('--sample_rate', type=int,
                   help='with --wav -: samples per second (required)')
    p.add_argument('--channels', type=int, default=1,
                   help='with --wav -: interleaved channels')
    p.add_argument('--format', choices=FORMATS, default='s16le',
                   help='with --wav -: the sample format')
    p.add_argument('--chunk_seconds', type=float, default=0.1)
    p.add_argument('--speed', type=float, default=1.0,
                   help='times real time (0: no pacing)')
    p.add_argument('--api_key', help='the service\'s API key, if it has one')
    p.add_argument('--options', default='{}',
                   help='more first-message settings as JSON, e.g. '
                   '\'{"threshold": 0.3, "top_k": 3, "hop_seconds": 0.5}\'')
    p.add_argument('--quiet_scores', action='store_true',
                   help='print events and errors only')
    return p


def audio_chunks(args):
    """``(first message, iterator of byte chunks)``."""
    if args.wav == '-':
        if not args.sample_rate:
            raise UserError('--wav - needs --sample_rate')
        size = 2 if args.format == 's16le' else 4
        frame = size * args.channels
        step = max(1, int(args.chunk_seconds * args.sample_rate)) * frame
        start = {'sample_rate': args.sample_rate, 'channels': args.channels,
                 'format': args.format}

        def read():
            while True:
                data = sys.stdin.buffer.read(step)
                if not data:
                    return
                yield data
        return start, read(), args.sample_rate * frame
    import soundfile as sf
    try:
        f = sf.SoundFile(args.wav)
    except Exception as e:
        raise UserError(f'{args.wav}: cannot read ({e})') from None
    frames = max(1, int(args.chunk_seconds * f.samplerate))
    fmt = 's16le' if f.subtype in ('PCM_16', 'PCM_S8', 'PCM_U8') \
        else 'f32le'
    dtype = 'int16' if fmt == 's16le' else 'float32'

    def blocks():
        with f:
            for block in f.blocks(frames, dtype=dtype, always_2d=True):
                yield block.astype(block.dtype.newbyteorder("<")).tobytes()
    return ({'sample_rate': f.samplerate, 'channels': f.channels,
             'format': fmt}, blocks(),
            f.samplerate * f.channels * np.dtype(dtype).itemsize)


def stream(args, out=sys.stdout):
    """Send the audio and print each message; returns the close code."""
    from websockets.sync.client import connect
    from websockets.exceptions import ConnectionClosed
    start, chunks, rate = audio_chunks(args)
    try:
        start.update(json.loads(args.options))
    except ValueError as e:
        raise UserError(f'--options is not JSON ({e})') from None
    headers = {'Authorization': f'Bearer {args.api_key}'} \
        if args.api_key else None
    try:
        ws = connect(args.url, additional_headers=headers,
                     max_size=None, open_timeout=30)
    except (OSError, Exception) as e:
        raise UserError(f'{args.url}: cannot connect ({e})') from None

    def receive():
        try:
            for message in ws:
                m = json.loads(message)
                if not (args.quiet_scores and m.get('type') == 'scores'):
                    print(json.dumps(m), file=out, flush=True)
        except ConnectionClosed:
            pass
    reader = threading.Thread(target=receive, daemon=True)
    with ws:
        ws.send(json.dumps(start))
        reader.start()
        began, sent = time.monotonic(), 0
        try:
            for data in chunks:
                ws.send(data)
                sent += len(data)
                if args.speed > 0:
                    ahead = sent / rate / args.speed - (
                        time.monotonic() - began)
                    if ahead > 0:
                        time.sleep(ahead)
            ws.send(json.dumps({'type': 'end'}))
        except ConnectionClosed:
            pass
        reader.join()
    return ws.close_code


def main(argv):
    args = get_parser().parse_args(argv)
    code = stream(args)
    if code != 1000:
        print(f'error: the server closed the stream with code {code}',
              file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    run(main)
