"""Search by example and the review page: the query's own window comes
first, a planted near-duplicate above unrelated windows, the ranking is
numpy's brute force; a changed model is refused; the page in Chromium
exports exactly the answered rows as a manifest the layouts read."""
import csv
import json
import time

import numpy as np
import pytest
import soundfile as sf

from tests.browser import browser  # noqa: F401
from tests.conftest import run_script
from paddlespeech.cls.datasets.layouts import read_manifest
from paddlespeech.cls.errors import UserError
from paddlespeech.cls.review import Candidate, write_review
from paddlespeech.cls.search import (embed_query, open_index_model,
                                     read_run, run_record, search,
                                     write_analysis)

SR = 32000


def sounds(seconds, seed):
    """Distinct sounds per second: tones, chirps, noise bursts, over a
    noise floor."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(int(seconds)):
        t = np.arange(SR) / SR
        kind = rng.integers(3)
        if kind == 0:
            x = np.sin(2 * np.pi * rng.uniform(100, 4000) * t)
        elif kind == 1:
            f0, f1 = rng.uniform(200, 1000), rng.uniform(3000, 9000)
            x = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / 2))
        else:
            x = rng.standard_normal(SR) * np.sin(np.pi * t * rng.integers(
                1, 8)) ** 2
        out.append(0.3 * x + 0.02 * rng.standard_normal(SR))
    return np.concatenate(out).astype(np.float32)


@pytest.fixture(scope='module')
def index(tmp_path_factory):
    """A random-weight CNN6 checkpoint (1 s clips), four 4 s files and
    their 1 s windows indexed; b.wav 2-3 s is a.wav 1-2 s plus faint
    noise."""
    from paddlespeech.cls.checkpoint import model_meta, save_model
    from paddlespeech.cls.features import FeatureConfig
    from paddlespeech.cls.models import build_classifier
    from paddlespeech.cls.opener import open_model
    from paddlespeech.cls.task import Task
    root = tmp_path_factory.mktemp('search')
    net = build_classifier('cnn6', 2, pretrained=False)
    ckpt = save_model(root / 'ckpt', 'best', net.state_dict(), model_meta(
        'cnn6', ['x', 'y'], 0.1, FeatureConfig(), Task(), 1.0))
    ckpt = ckpt / 'model.pdparams'
    files = {name: sounds(4, seed) for seed, name in enumerate('abcd')}
    rng = np.random.default_rng(9)
    files['b'][2 * SR:3 * SR] = files['a'][SR:2 * SR] + \
        0.002 * rng.standard_normal(SR)
    paths = {}
    for name, wav in files.items():
        paths[name] = str(root / f'{name}.wav')
        sf.write(paths[name], wav, SR, subtype='FLOAT')
    model = open_model(checkpoint=ckpt, device='cpu', cpu_threads=1)
    cols = {'path': [], 'start': [], 'end': [], 'embedding': []}
    for name, wav in files.items():
        for k in range(4):
            cols['path'].append(paths[name])
            cols['start'].append(float(k))
            cols['end'].append(k + 1.0)
        cols['embedding'].append(model.embeddings(
            list(wav.reshape(4, SR))))
    cols['embedding'] = np.concatenate(cols['embedding'])
    out = write_analysis(root / 'index', cols,
                         run_record(model, 1.0, 1.0, checkpoint=ckpt))
    return out, model, paths, ckpt


def test_own_window_first_planted_duplicate_next(index):
    out, model, paths, _ = index
    q = embed_query(model, paths['a'], 1.0, 2.0, 1.0, 1.0)
    hits = search(out, q, top_k=16)
    assert (hits[0].path, hits[0].start, hits[0].end) == (paths['a'], 1, 2)
    assert hits[0].similarity == pytest.approx(1.0, abs=1e-3)
    assert (hits[1].path, hits[1].start) == (paths['b'], 2.0)
    # (a random-weight CNN6's ReLU embeddings share one direction: all
    # similarities are near 1, the order still tells the duplicate apart)
    assert hits[1].similarity > hits[2].similarity
    sims = [h.similarity for h in hits]
    assert sims == sorted(sims, reverse=True) and len(hits) == 16
    # excluding the query's file and a floor on the similarity
    others = search(out, q, top_k=16, exclude_paths=[paths['a']],
                    min_similarity=hits[3].similarity)
    assert paths['a'] not in {h.path for h in others}
    assert all(h.similarity >= hits[3].similarity for h in others)
    assert (others[0].path, others[0].start) == (paths['b'], 2.0)


def test_ranking_equals_brute_force(tmp_path):
    rng = np.random.default_rng(3)
    n, d = 5000, 64
    emb = rng.standard_normal((n, d)).astype(np.float16)
    emb[7] = 0  # no direction: similarity 0, not NaN
    parts = [{'path': [f'/x/{i // 10}.wav' for i in range(a, a + 1000)],
              'start': np.arange(a, a + 1000) * 0.5,
              'end': np.arange(a, a + 1000) * 0.5 + 1,
              'embedding': emb[a:a + 1000]} for a in range(0, n, 1000)]
    out = write_analysis(tmp_path / 'idx', parts, {'model': {}})
    q = rng.standard_normal(d)
    x = emb.astype(np.float32)
    ref = x @ (q / np.linalg.norm(q)).astype(np.float32) / np.maximum(
        np.linalg.norm(x, axis=1), 1e-30)
    order = np.lexsort((np.arange(n), -ref))[:100]
    for threads in (1, 2):
        hits = search(out, q, top_k=100, threads=threads)
        assert [(h.start * 2) for h in hits] == list(order)
        np.testing.assert_allclose([h.similarity for h in hits], ref[order],
                                   rtol=1e-5, atol=1e-6)
    assert search(out, q, top_k=n + 5)[-1].similarity == pytest.approx(
        ref.min(), abs=1e-6)
    # the cached matrix follows a changed windows file
    emb[:1000] = -emb[:1000]
    write_analysis(tmp_path / 'idx', [{**parts[0], 'embedding': emb[:1000]},
                                      *parts[1:]], {'model': {}})
    top = search(out, q, top_k=1)[0]
    x = emb.astype(np.float32)
    best = np.argmax(x @ q / np.maximum(np.linalg.norm(x, axis=1), 1e-30))
    assert top.start * 2 == best


def test_a_changed_model_is_refused(index, tmp_path):
    out, model, _, ckpt = index
    run = read_run(out)
    run['meta']['label_list'] = ['x', 'z']
    (tmp_path / 'run.json').write_text(json.dumps(run))
    for sub in ('windows', 'files'):
        (tmp_path / sub).symlink_to(out / sub)
    with pytest.raises(UserError) as e:
        open_index_model(tmp_path, device='cpu', cpu_threads=1)
    assert 'label_list' in str(e.value) and '\n' not in str(e.value)
    assert open_index_model(out, device='cpu', cpu_threads=1).labels == \
        ['x', 'y']


@pytest.mark.slow
def test_search_script_writes_hits_labels_and_page(index, tmp_path):
    out, _, paths, _ = index
    proc = run_script('search.py', '--index', out, '--query', paths['a'],
                      '--query_start', 1, '--query_end', 2, '--top_k', 5,
                      '--exclude_same_file', '--output_dir', tmp_path / 'o',
                      '--cpu_threads', 1)
    rows = list(csv.DictReader(open(tmp_path / 'o' / 'hits.csv')))
    assert len(rows) == 5 and rows[0]['rank'] == '1'
    assert (rows[0]['path'], rows[0]['start']) == (paths['b'], '2.000')
    assert paths['a'] not in {r['path'] for r in rows}
    label = (tmp_path / 'o' / 'labels' / 'b.txt').read_text()
    lines = label.splitlines()  # in time order, hits numbered by rank
    assert '2.000000\t3.000000\t#1 1.000' in lines
    assert [float(x.split()[0]) for x in lines] == sorted(
        float(x.split()[0]) for x in lines)
    assert (tmp_path / 'o' / 'hits.html').is_file()
    snip, sr = sf.read(tmp_path / 'o' / 'snippets' / '00001.wav')
    assert sr == SR and len(snip) == SR
    assert (tmp_path / 'o' / 'snippets' / '00001.png').stat().st_size > 100
    assert '5 hits' in proc.stdout
    # the model of another run.json is refused in one line, exit 2
    run = read_run(out)
    run['meta']['feature']['n_mels'] = 32
    bad = tmp_path / 'bad'
    bad.mkdir()
    (bad / 'run.json').write_text(json.dumps(run))
    (bad / 'windows').symlink_to(out / 'windows')
    proc = run_script('search.py', '--index', bad, '--query', paths['a'],
                      '--output_dir', tmp_path / 'o2', check=False)
    assert proc.returncode == 2
    assert proc.stderr.count('\n') == 1 and 'feature' in proc.stderr


def test_review_page_exports_the_answered_rows(browser, tmp_path):  # noqa: F811
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    rng = np.random.default_rng(0)
    audio = tmp_path / 'long, "odd".wav'
    sf.write(audio, 0.1 * rng.standard_normal(6 * SR), SR)
    cands = [Candidate(str(audio), k, k + 1.0, 0.9 - k / 10)
             for k in range(5)]
    page = write_review(tmp_path / 'review', cands, 'hits', 'dog')
    assert (tmp_path / 'review' / 'snippets' / '00005.wav').is_file()
    downloads = tmp_path / 'downloads'
    downloads.mkdir()
    driver_path, chromium = browser
    options = webdriver.ChromeOptions()
    for arg in ('--headless=new', '--no-sandbox', '--disable-gpu',
                '--disable-dev-shm-usage'):
        options.add_argument(arg)
    options.add_experimental_option('prefs', {
        'download.default_directory': str(downloads),
        'download.prompt_for_download': False})
    options.binary_location = chromium
    driver = webdriver.Chrome(service=webdriver.ChromeService(driver_path),
                              options=options)
    try:
        driver.get(page.as_uri())
        rows = driver.find_elements(By.CSS_SELECTOR, '#rows tbody tr')
        assert len(rows) == 5
        rows[0].find_element(By.CLASS_NAME, 'yes').click()
        rows[2].find_element(By.CLASS_NAME, 'no').click()
        rows[3].find_element(By.CLASS_NAME, 'otherlabel').send_keys('cat')
        rows[3].find_element(By.CLASS_NAME, 'other').click()
        body = driver.find_element(By.TAG_NAME, 'body')
        rows[4].find_element(By.CLASS_NAME, 'no').click()
        rows[4].find_element(By.CLASS_NAME, 'yes').click()  # changed mind
        body.send_keys('k')  # keyboard: to row 4 (index 3) ...
        body.send_keys('k')  # ... row 3 (index 2), answered no
        body.send_keys('y')  # now yes
        driver.find_element(By.ID, 'export').click()
        target = downloads / 'review.csv'
        deadline = time.time() + 20
        while not target.is_file() and time.time() < deadline:
            time.sleep(0.2)
        text = target.read_text()
    finally:
        driver.quit()
    got = list(csv.DictReader(text.splitlines()))
    assert got == [
        {'path': str(audio), 'label': 'dog', 'start': '0', 'end': '1'},
        {'path': str(audio), 'label': 'dog', 'start': '2', 'end': '3'},
        {'path': str(audio), 'label': 'cat', 'start': '3', 'end': '4'},
        {'path': str(audio), 'label': 'dog', 'start': '4', 'end': '5'}]
    # the own-data manifest layout reads the export as segments
    (tmp_path / 'review.csv').write_text(text)
    files, labels, folds, spans = read_manifest(tmp_path / 'review.csv')
    assert labels == [['dog'], ['dog'], ['cat'], ['dog']] and folds is None
    assert [spans[f][1:] for f in files] == [(0, 1), (2, 3), (3, 4), (4, 5)]
