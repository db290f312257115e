"""Downloads and the pretrained-weights cache against a local HTTP server."""
import dataclasses
import hashlib
import http.server
import io
import socket
import tarfile
import threading
from collections import Counter

import numpy as np
import paddle
import pytest

from paddlespeech.cls.download import DownloadError, download
from paddlespeech.cls.models.panns import cnn6, registry, weights

CNN6 = registry.BACKBONES['cnn6']

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()
HINT = 'Alternatives: place the file yourself.'


class Server:
    """``http.server`` in a thread serving ``routes[path] = (body, length)``.

    ``length`` is the Content-Length sent, larger than the body to simulate
    a connection that drops mid-transfer.
    """

    def __init__(self):
        self.routes, self.requests = {}, Counter()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):

            def do_GET(self):
                server.requests[self.path] = server.requests[self.path] + 1
                if self.path not in server.routes:
                    self.send_error(404)
                    return
                body, length = server.routes[self.path]
                self.send_response(200)
                self.send_header('Content-Length', str(length))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0),
                                                     Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       args=(0.05, ), daemon=True)
        self.thread.start()

    def serve(self, path, body, declared_length=None):
        self.routes[path] = (body, declared_length or len(body))
        return self.url(path)

    def url(self, path):
        return f'http://127.0.0.1:{self.httpd.server_address[1]}{path}'

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def refused_url():
    """A URL on a port nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    return f'http://127.0.0.1:{port}/file.bin'


def assert_nothing_cached(folder):
    assert [p.name for p in folder.iterdir()] == []


def test_good_file_is_downloaded_once(server, tmp_path):
    url = server.serve('/good.bin', PAYLOAD)
    dest = tmp_path / 'good.bin'
    assert download(url, dest, md5=PAYLOAD_MD5) == dest
    assert dest.read_bytes() == PAYLOAD
    assert download(url, dest, md5=PAYLOAD_MD5) == dest
    assert server.requests['/good.bin'] == 1
    assert [p.name for p in tmp_path.iterdir()] == ['good.bin']


@pytest.mark.parametrize('case', ['truncated', 'checksum', 'refused',
                                  'not found'])
def test_failures_leave_no_file(case, server, refused_url, tmp_path):
    md5 = PAYLOAD_MD5
    if case == 'truncated':
        url = server.serve('/f.bin', PAYLOAD, len(PAYLOAD) + 1000)
    elif case == 'checksum':
        url = server.serve('/f.bin', PAYLOAD)
        md5 = '0' * 32
    elif case == 'refused':
        url = refused_url
    else:
        url = server.url('/f.bin')
    dest = tmp_path / 'cache' / 'f.bin'
    with pytest.raises(DownloadError) as e:
        download(url, dest, md5=md5, hint=HINT)
    message = str(e.value)
    assert url in message and str(dest) in message and HINT in message
    reason = {'truncated': f'got {len(PAYLOAD)} of {len(PAYLOAD) + 1000}',
              'checksum': 'checksum mismatch', 'refused': 'refused',
              'not found': 'Not Found'}[case]
    assert reason in message
    assert_nothing_cached(dest.parent)


def test_stale_file_is_named_when_the_download_fails(refused_url, tmp_path):
    dest = tmp_path / 'f.bin'
    dest.write_bytes(b'old')
    with pytest.raises(DownloadError, match='existing .* has md5'):
        download(refused_url, dest, md5=PAYLOAD_MD5)


def zero_weights(arch):
    skeleton = registry.BACKBONES[arch].skeleton()
    return {name: np.zeros(shape, 'float32') for name, shape in
            weights.shapes(skeleton.state_dict()).items()}


def pdparams_bytes(state):
    buffer = io.BytesIO()
    paddle.save(state, buffer)
    return buffer.getvalue()


def tar_gz(members):
    """A .tar.gz with ``{name: bytes}`` (PaddleSpeech's archives hold a dir)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w:gz', compresslevel=1) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path))
    return tmp_path


def set_sources(monkeypatch, url, md5, pdparams):
    """Point the registry's cnn6 entry at other weight sources."""
    monkeypatch.setitem(registry.BACKBONES, 'cnn6', dataclasses.replace(
        CNN6, archive=url, archive_md5=md5, pdparams=pdparams))


def serve_archive(server, monkeypatch, archive, md5=None):
    url = server.serve('/panns_cnn6.tar.gz', archive)
    set_sources(monkeypatch, url, md5 or hashlib.md5(archive).hexdigest(),
                server.url('/none.pdparams'))
    return url


def test_fetch_pretrained(server, cache, monkeypatch):
    state = zero_weights('cnn6')
    state['fc1.bias'] = np.full(512, 0.5, 'float32')
    archive = tar_gz({'panns_cnn6/cnn6.pdparams': pdparams_bytes(state),
                      'panns_cnn6/panns.yaml': b'{}'})
    serve_archive(server, monkeypatch, archive)

    dest = weights.fetch_pretrained(registry.BACKBONES['cnn6'])
    assert dest == cache / 'panns_cnn6.pdparams'
    assert sorted(p.name for p in cache.iterdir()) == [
        'panns_cnn6.pdparams', 'panns_cnn6.tar.gz']
    assert weights.fetch_pretrained(registry.BACKBONES['cnn6']) == dest
    model = cnn6(pretrained=True)
    assert server.requests['/panns_cnn6.tar.gz'] == 1
    np.testing.assert_array_equal(model.fc1.bias.numpy(), state['fc1.bias'])


@pytest.mark.parametrize('case', ['refused', 'checksum', 'no weights'])
def test_fetch_pretrained_failures(case, server, refused_url, cache,
                                   monkeypatch):
    if case == 'refused':
        url = refused_url
        set_sources(monkeypatch, url, '0' * 32, server.url('/none.pdparams'))
    else:
        archive = tar_gz({'panns_cnn6/panns.yaml': b'{}'})
        url = serve_archive(server, monkeypatch, archive,
                            '0' * 32 if case == 'checksum' else None)
    with pytest.raises(DownloadError) as e:
        weights.fetch_pretrained(registry.BACKBONES['cnn6'])
    message = str(e.value)
    assert len(message.splitlines()) == 1
    assert url in message and server.url('/none.pdparams') in message
    assert str(cache / 'panns_cnn6.pdparams') in message
    assert 'paddlespeech.cls.exps.panns.convert --arch cnn6' in message
    assert 'Cnn6_mAP=0.343.pth' in message and '--pretrained_path' in message
    if case != 'no weights':
        assert_nothing_cached(cache)
    assert not (cache / 'panns_cnn6.pdparams').exists()
    assert not list(cache.glob('.*'))


@pytest.mark.parametrize('second', ['good', 'does not fit'])
def test_fetch_pretrained_falls_back_to_the_pdparams(second, server,
                                                     refused_url, cache,
                                                     monkeypatch):
    """The archive's host refuses: the plain .pdparams (upstream recipe's
    source, no md5) is used when it loads and fits, else refused."""
    state = zero_weights('cnn6')
    state['fc1.bias'] = np.full(512, 0.25, 'float32')
    if second == 'does not fit':
        state['fc1.bias'] = np.zeros(3, 'float32')
    url = server.serve('/panns_cnn6.pdparams', pdparams_bytes(state))
    set_sources(monkeypatch, refused_url, '0' * 32, url)
    if second == 'does not fit':
        with pytest.raises(DownloadError) as e:
            weights.fetch_pretrained(registry.BACKBONES['cnn6'])
        assert refused_url in str(e.value) and url in str(e.value)
        assert 'fc1.bias has shape [3], expected [512]' in str(e.value)
        assert_nothing_cached(cache)
        return
    dest = weights.fetch_pretrained(registry.BACKBONES['cnn6'])
    assert dest == cache / 'panns_cnn6.pdparams'
    assert [p.name for p in cache.iterdir()] == ['panns_cnn6.pdparams']
    model = cnn6(pretrained=True)
    np.testing.assert_array_equal(model.fc1.bias.numpy(), state['fc1.bias'])
    assert server.requests['/panns_cnn6.pdparams'] == 1


def test_load_pretrained_refuses_what_does_not_fit(tmp_path):
    state = zero_weights('cnn6')
    state.pop('bn0._variance')
    state['fc1.weight'] = np.zeros((512, 256), 'float32')
    path = tmp_path / 'w.pdparams'
    paddle.save(state, str(path))
    with pytest.raises(weights.WeightsError) as e:
        weights.load_pretrained(CNN6, path)
    assert 'missing tensor bn0._variance' in str(e.value)
    assert 'fc1.weight has shape [512, 256]' in str(e.value)


@pytest.mark.parametrize('content, expected', [
    (None, 'not found'),
    (b'PK not paddle', 'must be converted first'),
    ({'_meta': '{}', 'fc.weight': np.zeros(3, 'float32')}, 'predict.py'),
], ids=['missing', 'torch-like', 'classifier'])
def test_load_pretrained_explains_wrong_files(content, expected, tmp_path):
    path = tmp_path / 'w.pdparams'
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        paddle.save(content, str(path))
    with pytest.raises(weights.WeightsError, match=expected):
        weights.load_pretrained(CNN6, path)
