"""The GCN of Lab 4 (GCNConv layers with activation, optional PairNorm and dropout between them),
DropEdge, and the dot-product decoder of link prediction."""
import torch
import torch.nn.functional as F
from torch import nn


class GCN(nn.Module):
    """`layers` GCNConv layers; between them the activation, optional PairNorm, and dropout."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, layers: int, activation: str,
                 self_loop: bool, pair_norm: bool, dropout: float):
        from torch_geometric.nn import GCNConv, PairNorm
        super().__init__()
        dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
        self.convs = nn.ModuleList(GCNConv(a, b, add_self_loops=self_loop)
                                   for a, b in zip(dims, dims[1:], strict=False))
        make = {"prelu": lambda: nn.PReLU(hidden), "tanh": nn.Tanh, "relu": nn.ReLU}[activation]
        self.activations = nn.ModuleList(make() for _ in range(layers - 1))
        self.norms = nn.ModuleList(PairNorm() for _ in range(layers - 1)) if pair_norm else None
        self.dropout = dropout

    def forward(self, x, edge_index, batch=None):
        for i, conv in enumerate(self.convs):
            x = conv(F.dropout(x, self.dropout, self.training), edge_index)
            if i < len(self.activations):
                x = self.activations[i](x)
                if self.norms is not None:
                    x = self.norms[i](x, batch)
        return x


def drop_edges(edge_index, p: float, training: bool):
    if not (training and p):
        return edge_index
    from torch_geometric.utils import dropout_edge
    return dropout_edge(edge_index, p=p, force_undirected=True)[0]


def link_logits(z: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """Dot-product decoder: the logit of an edge between each column (u, v) of pairs (2, E)."""
    return (z[pairs[0]] * z[pairs[1]]).sum(-1)
