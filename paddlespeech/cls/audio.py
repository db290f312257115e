"""Reading audio files into the mono float32 waveform the models expect."""
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import soundfile as sf

from .errors import UserError

# File name endings of each libsndfile major format (soundfile's names),
# its own and the usual aliases. Left out: RAW (header-less, needs its
# parameters given), and MAT4/MAT5, MPC2K and HTK, whose endings (.mat,
# .mpc, .htk) mostly name MATLAB data, Musepack (unreadable here) and HTK
# feature files rather than audio.
_SUFFIXES_OF_FORMAT = {
    'WAV': ('wav', 'wave'), 'WAVEX': ('wav',), 'RF64': ('rf64', 'wav'),
    'W64': ('w64',), 'NIST': ('nist', 'sph'), 'AIFF': ('aiff', 'aif', 'aifc'),
    'AU': ('au', 'snd'), 'CAF': ('caf',), 'FLAC': ('flac',),
    'OGG': ('ogg', 'oga', 'opus'), 'MP3': ('mp3', 'mp2', 'm1a'),
    'IRCAM': ('sf', 'ircam'), 'VOC': ('voc',), 'SVX': ('iff', 'svx', '8svx'),
    'PAF': ('paf',), 'PVF': ('pvf',), 'XI': ('xi',), 'SDS': ('sds',),
    'AVR': ('avr',), 'SD2': ('sd2',), 'WVE': ('wve',),
}
# Every ending a folder scan takes for audio: those of the formats this
# libsndfile reads.
AUDIO_SUFFIXES = frozenset(
    f'.{ext}' for name in sf.available_formats()
    for ext in _SUFFIXES_OF_FORMAT.get(name, ()))
# What the HTTP service takes (docs/serving.md lists them): the common
# formats, WAV with its extensible and RF64 variants. An upload in another
# format libsndfile reads (MATLAB, NIST, CAF, ...) is refused, whatever
# its name says.
SERVED_FORMATS = ('WAV', 'WAVEX', 'RF64', 'FLAC', 'OGG', 'MP3', 'AIFF', 'AU')
# Integer samples are finite by construction and their decoding cannot
# fail midway, so a header check is all a scan needs for them.
_INTEGER_SUBTYPES = ('PCM_', 'ULAW', 'ALAW', 'DPCM_', 'DWVW_')


class AudioError(UserError):
    """A file that cannot be used as input; the message names file and reason."""

    def __init__(self, path, reason):
        super().__init__(f'{path}: {reason}')
        self.path, self.reason = path, reason


class AudioBytes(io.BytesIO):
    """A file held in memory (an upload), accepted wherever a path is;
    ``name`` stands for it in error messages. Only ``formats`` (libsndfile
    major format names) open; None: any."""

    def __init__(self, data, name='<upload>', formats=SERVED_FORMATS):
        super().__init__(data)
        self.name, self.formats = name, formats

    def __str__(self):
        return self.name


def to_mono(wav):
    """``[samples, channels]`` or ``[samples]`` -> ``[samples]`` by averaging."""
    if wav.ndim == 1:
        return wav
    return wav[:, 0] if wav.shape[1] == 1 else wav.mean(axis=1)


def resample(wav, orig_sr, target_sr):
    """Band-limited resampling (soxr, 'HQ'); identity when the rates match."""
    if orig_sr == target_sr:
        return wav
    import soxr
    return soxr.resample(wav, orig_sr, target_sr, quality='HQ').astype(
        np.float32)


def load_audio(path, sample_rate, min_samples=0, start=None, end=None):
    """Read ``path``, mix down to mono, resample to ``sample_rate``.

    Clips shorter than ``min_samples`` (e.g. one FFT window) are zero-padded
    at the end. ``start``/``end`` (seconds): only that part of the file is
    read (a :class:`Segment` path carries its own). Raises
    :class:`AudioError` for unreadable files and for non-finite samples,
    which would otherwise become NaN scores.
    """
    if isinstance(path, Segment):
        path, start, end = path.path, path.start, path.end
    with _open(path) as f:
        wav, orig_sr = read_segment(f, path, start, end), f.samplerate
    return _prepare(wav, orig_sr, sample_rate, min_samples, path)


def read_segment(f, path, start=None, end=None):
    """``[frames, channels]`` float32 of the open file ``f`` from ``start``
    to ``end`` seconds (None: its beginning / end), without decoding the
    rest."""
    if start is None and end is None:
        return _read(f, path)
    first = int(round((start or 0.0) * f.samplerate))
    last = f.frames if end is None else min(
        f.frames, int(round(end * f.samplerate)))
    if first >= last:
        raise AudioError(path, f'segment {start}-{end} s is empty (the file '
                         f'lasts {f.frames / f.samplerate:.3f} s)')
    f.seek(first)
    return _read(f, path, last - first)


@dataclass(frozen=True)
class Segment:
    """The part ``start``-``end`` (seconds) of the audio file ``path``: a
    clip of a manifest with ``start``/``end`` columns. Opens as its file
    (``os.fspath``); :func:`load_audio` and :func:`read_windows` read only
    the segment."""
    path: str
    start: float
    end: float

    def __fspath__(self):
        return str(self.path)

    def __str__(self):
        return f'{self.path} [{self.start:g}-{self.end:g} s]'


def read_windows(path, sample_rate, window_seconds, min_samples=0,
                 hop_seconds=None):
    """Yield ``path`` as windows of ``window_seconds``, one every
    ``hop_seconds`` (default: the window, i.e. consecutive windows).

    The file is read a block at a time and resampled as one stream, so
    memory does not grow with the file's length and the windows are
    exactly those of the whole file converted at once: a file gives the
    same windows as its own 32 kHz mono conversion (resampling each window
    on its own would put filter transients at every window edge), and a
    clip no longer than one window gives exactly :func:`load_audio`'s
    result. Window ``k`` starts at sample ``k * hop``; windows go on
    until one reaches the end of the file, so only the last window may be
    shorter (and a file shorter than a window gives one window).
    """
    size, hop = window_samples(sample_rate, window_seconds, hop_seconds)
    segment = path if isinstance(path, Segment) else None
    if segment:
        path = segment.path
    cutter = WindowCutter(size, hop)
    with _open(path) as f:
        orig_sr = f.samplerate
        frames = max(1, int(round(hop * orig_sr / sample_rate)))
        left = None
        if segment:
            left = len(read_segment(f, path, segment.start, segment.end))
            f.seek(int(round(segment.start * orig_sr)))
        stream = _ResampleStream(orig_sr, sample_rate)
        first = True
        while True:
            wav = _read(f, path, frames if left is None else
                        max(0, min(frames, left)), first=first)
            if left is not None:
                left -= wav.shape[0]
            first, done = False, wav.shape[0] == 0
            if not np.isfinite(wav).all():
                raise AudioError(path, 'contains NaN or infinite samples')
            cutter.push(stream(to_mono(wav).reshape(-1), last=done))
            for window in (cutter.end() if done else cutter.full()):
                if len(window) < min_samples:
                    window = np.pad(window, (0, min_samples - len(window)))
                yield window
            if done:
                return


class WindowCutter:
    """The windows of a signal that arrives in chunks, exactly as
    :func:`read_windows` cuts a whole file: window ``k`` starts at sample
    ``k * hop``; :meth:`full` yields each window once all its samples are
    in, :meth:`end` (after the last chunk) the rest, the last of which
    reaches the end (shorter than ``size``). Holds at most a window plus
    the latest chunk."""

    def __init__(self, size, hop):
        self.size, self.hop = size, hop
        self.pending = np.zeros(0, np.float32)
        self.last_end = None  # where the previous window ended in pending
        self.count = 0  # windows cut so far
        self.samples = 0  # samples pushed so far

    def push(self, chunk):
        self.samples += len(chunk)
        self.pending = np.concatenate([self.pending, np.asarray(
            chunk, np.float32)])

    def full(self):
        while len(self.pending) >= self.size:
            yield self._cut()

    def end(self):
        yield from self.full()
        while len(self.pending) and (self.last_end is None or
                                     len(self.pending) > self.last_end):
            yield self._cut()

    def _cut(self):
        window = np.ascontiguousarray(self.pending[:self.size])
        self.pending, self.last_end = self.pending[self.hop:], \
            self.size - self.hop
        self.count += 1
        return window


def window_samples(sample_rate, window_seconds, hop_seconds=None):
    """``(window, hop)`` in samples as :func:`read_windows` cuts them: the
    times of its windows are multiples of this hop, not of the seconds
    asked for."""
    size = max(1, int(round(window_seconds * sample_rate)))
    if hop_seconds is None:
        return size, size
    return size, min(size, max(1, int(round(hop_seconds * sample_rate))))


# The window of a model that records no clip length (upstream PaddleSpeech
# exports, the AudioSet tagger): PANNs were trained on 10 s AudioSet clips.
DEFAULT_WINDOW_SECONDS = 10.0


@dataclass(frozen=True)
class Windowing:
    """The one rule by which every tool cuts audio into model inputs.

    Windows of ``seconds``, one every ``hop_seconds`` (default: back to
    back). With ``pad``, a window shorter than ``seconds`` (the end of a
    file, or a whole file shorter than a window) is zero-padded to exactly
    ``seconds``: training pads its crops with silence to the clip length,
    so a model sees a short sound the same way in training, evaluation and
    prediction, and windows of one length batch together whatever else is
    in the batch. A file's score is the mean of its windows' scores,
    weighted by the audio samples in each window (:meth:`windows` yields
    that count), padding excluded.
    """
    seconds: float
    hop_seconds: Optional[float] = None
    pad: bool = True

    @classmethod
    def of_model(cls, clip_seconds, window_seconds=None, hop_seconds=None):
        """The rule for a model trained on ``clip_seconds`` (its recorded
        clip length, None when it records none): windows of that length
        padded to it, unless ``window_seconds`` overrides the length.
        Without a recorded length, windows of
        :data:`DEFAULT_WINDOW_SECONDS` and no padding, as upstream
        PaddleSpeech scores a whole short clip."""
        return cls(window_seconds or clip_seconds or DEFAULT_WINDOW_SECONDS,
                   hop_seconds, pad=clip_seconds is not None)

    def samples(self, sample_rate):
        """``(window, hop)`` in samples (:func:`window_samples`)."""
        return window_samples(sample_rate, self.seconds, self.hop_seconds)

    def windows(self, path, sample_rate, min_samples=0):
        """Yield ``(window, audio samples in it)`` for ``path``
        (:func:`read_windows`); windows shorter than ``min_samples`` (one
        FFT frame) are padded even without :attr:`pad`."""
        size, _ = self.samples(sample_rate)
        length = max(size if self.pad else 0, min_samples)
        for wav in read_windows(path, sample_rate, self.seconds,
                                hop_seconds=self.hop_seconds):
            n = len(wav)
            if n < length:
                wav = np.pad(wav, (0, length - n))
            yield wav, n


class _ResampleStream:
    """:func:`resample` for a signal that arrives in chunks (soxr HQ)."""

    def __init__(self, orig_sr, target_sr):
        self.stream = None
        if orig_sr != target_sr:
            import soxr
            self.stream = soxr.ResampleStream(orig_sr, target_sr, 1,
                                              dtype='float32', quality='HQ')

    def __call__(self, chunk, last):
        chunk = np.ascontiguousarray(chunk, dtype=np.float32)
        if self.stream is None:
            return chunk
        return self.stream.resample_chunk(chunk, last=last)


def probe_audio(path):
    """Cheap check that ``path`` opens and has samples; raises AudioError.

    Reads the header only: catches missing, empty, non-audio and
    zero-length files, not bad samples further in.
    """
    with _open(path) as f:
        if f.frames == 0:
            raise AudioError(path, 'contains no samples')


def check_audio(path, block_frames=1 << 16):
    """:func:`probe_audio`, and every sample decoded (a block at a time,
    so memory stays bounded) where a bad one can hide: NaN or infinite
    float samples and compressed data that fails to decode midway, which
    would otherwise stop a training run at the clip's first use. Files of
    integer samples (ESC-50's 16-bit WAVs) need their header only."""
    with _open(path) as f:
        if f.frames == 0:
            raise AudioError(path, 'contains no samples')
        if f.subtype.startswith(_INTEGER_SUBTYPES):
            return
        first = True
        while True:
            wav = _read(f, path, block_frames, first=first)
            if not wav.shape[0]:
                return
            if not np.isfinite(wav).all():
                raise AudioError(path, 'contains NaN or infinite samples')
            first = False


def find_audio(folder):
    """``(audio, left_out)``: the audio files under ``folder`` (by
    :data:`AUDIO_SUFFIXES`; links kept even when dangling, so that they
    are reported rather than lost), sorted, and what was left out, as
    ``{reason: [paths]}``: hidden files and folders (a folder counts
    once), files that are not audio by name, links to folders (not
    followed). Paths are relative to ``folder``, in POSIX form."""
    audio, left_out = [], {'hidden': [], 'not audio': [],
                           'linked folder (not followed)': []}
    for top, dirs, names in os.walk(folder):
        rel = Path(os.path.relpath(top, folder))

        def name_of(name):
            return (rel / name).as_posix()
        for d in sorted(dirs):
            if d.startswith('.'):
                left_out['hidden'].append(name_of(d) + '/')
            elif os.path.islink(os.path.join(top, d)):
                left_out['linked folder (not followed)'].append(
                    name_of(d) + '/')
        dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
        for name in names:
            if name.startswith('.'):
                left_out['hidden'].append(name_of(name))
            elif os.path.splitext(name)[1].lower() in AUDIO_SUFFIXES:
                audio.append(name_of(name))
            else:
                left_out['not audio'].append(name_of(name))
    return sorted(audio, key=_by_folder), {
        k: sorted(v, key=_by_folder) for k, v in left_out.items() if v}


def _by_folder(path):
    """Sort key of a POSIX path as pathlib orders paths: folder by folder
    (``a/b.wav`` before ``a.wav``)."""
    return path.split('/')


def describe_left_out(left_out, first=3):
    """``left_out`` of :func:`find_audio` as one phrase: how many in all,
    then each reason's count and first few names."""
    parts = []
    for reason, paths in left_out.items():
        more = f', ... {len(paths) - first} more' if len(paths) > first \
            else ''
        parts.append(f'{len(paths)} {reason} ({", ".join(paths[:first])}'
                     f'{more})')
    n = sum(map(len, left_out.values()))
    return f'left out {n} file(s) or folder(s): {"; ".join(parts)}'


def audio_header(path):
    """``(seconds, sample_rate, channels)`` from the header alone (nothing
    decoded); raises AudioError."""
    with _open(path) as f:
        return f.frames / f.samplerate, f.samplerate, f.channels


def audio_seconds(path):
    """Duration from the header alone (nothing decoded); raises AudioError."""
    with _open(path) as f:
        return f.frames / f.samplerate


class AudioTooLarge(AudioError):
    """A file whose header promises more audio than a limit allows."""


# What a header may declare. Below 1 kHz no sound worth classifying is
# left, and the resampler makes up to 32 samples per declared one; above
# 384 kHz and 32 channels no audio interface records.
SAMPLE_RATES = (1000, 384000)
MAX_CHANNELS = 32


def check_header(path, max_samples):
    """``(seconds, samples)`` that ``path``'s header promises, checked
    before anything is decoded: decoding costs time in proportion to
    frames x channels, resampling to the frames' seconds, and a header
    of a few bytes can promise hours at 384 kHz. Raises AudioError for a
    sample rate outside :data:`SAMPLE_RATES` or more than
    :data:`MAX_CHANNELS` channels, :class:`AudioTooLarge` for more than
    ``max_samples`` samples (frames x channels)."""
    with _open(path) as f:
        rate, channels, frames = f.samplerate, f.channels, f.frames
    low, high = SAMPLE_RATES
    if not low <= rate <= high:
        raise AudioError(path, f'sample rate {rate} Hz is outside the '
                         f'{low}-{high} Hz taken')
    if channels > MAX_CHANNELS:
        raise AudioError(path, f'{channels} channels; at most '
                         f'{MAX_CHANNELS} are taken')
    if frames * channels > max_samples:
        raise AudioTooLarge(path, f'{frames / rate:.1f} s x {channels} '
                            f'channel(s) at {rate} Hz is over the '
                            f'{max_samples:.0f} samples decoded per file')
    return frames / rate, frames * channels


def _open(path):
    """An open ``sf.SoundFile``, or an AudioError that says why not."""
    if isinstance(path, AudioBytes):
        if path.seek(0, io.SEEK_END) == 0:
            raise AudioError(path, 'empty file (0 bytes)')
        path.seek(0)
        f = _soundfile(path, path)
        if path.formats is not None and f.format not in path.formats:
            f.close()
            raise AudioError(path, f'{f.format} files are not accepted by '
                             f'this service (send '
                             f'{_format_list(path.formats)})')
        return f
    p = Path(path)
    if p.is_symlink() and not p.exists():
        raise AudioError(path, f'dangling symbolic link (to '
                         f'{os.readlink(p)})')
    if not p.exists():
        raise AudioError(path, 'no such file')
    if p.is_dir():
        raise AudioError(path, 'is a directory, not an audio file')
    if p.stat().st_size == 0:
        raise AudioError(path, 'empty file (0 bytes)')
    return _soundfile(os.fspath(path), path)


def _soundfile(source, path):
    try:
        return sf.SoundFile(source)
    except Exception as e:  # soundfile raises several types for bad files
        raise AudioError(path, f'cannot read audio ({_reason(e)})') from e


def _format_list(formats):
    """``WAV, FLAC, ... or AU``: the names users know (variants folded)."""
    names = [n for n in formats if n not in ('WAVEX', 'RF64')]
    return ', '.join(names[:-1]) + ' or ' + names[-1]


def _read(f, path, frames=-1, first=True):
    try:
        wav = f.read(frames, dtype='float32', always_2d=True)
    except Exception as e:
        raise AudioError(path, f'cannot read audio ({_reason(e)})') from e
    if first and wav.shape[0] == 0:
        raise AudioError(path, 'contains no samples')
    return wav


def _prepare(wav, orig_sr, sample_rate, min_samples, path):
    if not np.isfinite(wav).all():
        raise AudioError(path, 'contains NaN or infinite samples')
    wav = resample(to_mono(wav), orig_sr, sample_rate)
    if len(wav) < min_samples:
        wav = np.pad(wav, (0, min_samples - len(wav)))
    return np.ascontiguousarray(wav, dtype=np.float32)


def _reason(e):
    """libsndfile's own reason, without the path the caller prints anyway.
    Its "File does not exist or is not a regular file" for a file that was
    just opened (what its MP3 decoder says of corrupt data) becomes what
    it means."""
    text = getattr(e, 'error_string', None) or str(e).strip()
    text = text.splitlines()[-1].rstrip('.') if text else type(e).__name__
    if text.startswith('File does not exist or is not a regular file'):
        return 'corrupt or truncated data: no audio frame could be decoded'
    return text
