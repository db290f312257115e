"""Whole archives into one Parquet dataset (``analyze.py``,
docs/analyze.md): :mod:`.inputs` (what to read), :mod:`.reading` (files
into batches of windows, beside the model), :mod:`.analyzer` (the files'
rows), :mod:`.store` (the output directory, its parts and
journal), :mod:`.engines` (local processes), :mod:`.ray_engine` (a Ray
cluster) and :mod:`.runner` (a whole run)."""
from dataclasses import dataclass
from typing import Optional, Union


@dataclass
class AnalyzeConfig:
    """The ``analyze:`` section (``analyze.py``), with the window and event
    keys of ``detect:``. Flat files name three keys after the script:
    ``analysis_dir`` (``--output_dir``), ``analyze_top_k`` and
    ``analyze_workers``."""
    FLAT = {'output_dir': 'analysis_dir', 'top_k': 'analyze_top_k',
            'workers': 'analyze_workers'}
    input: Optional[Union[str, list]] = None  # folders, patterns, lists
    output_dir: Optional[str] = None  # None: <export_dir>/../analysis
    top_k: int = 5  # labels kept per window
    scores: str = 'top'  # top | all: every class's score per window too
    embeddings: bool = False  # each window's embedding (float16)
    engine: str = 'local'  # local | ray
    address: Optional[str] = None  # ray: auto or HOST:PORT; None: a local Ray
    workers: int = 1  # processes (Ray actors), one model each
    cpus_per_worker: Optional[float] = None  # ray: None: cpu_threads or 1
    part_files: int = 64  # files per Parquet part (a journal commit)
    part_seconds: float = 60.0  # ... or a part at least this often
    quiet: bool = False  # no progress bar, no per-file error lines
