"""Lab 4: GCN node classification and link prediction (report, Lab 4).

    python lab4_gcn/train.py --task node --dataset cora
    python lab4_gcn/train.py --task link --dataset cora --pair-norm --drop-edge 0.2

node: Cora/CiteSeer single-label (cross-entropy, accuracy); PPI multi-label over its 20/2/2
graphs (BCE, micro-F1). link: a GCN encoder and a dot-product decoder; the validation and test
edges are held out of the message-passing graph; fresh negative edges every epoch (ROC-AUC).
The weights of the best validation score (ties: lower loss) give the test score.
"""
import sys
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `common` when run as a script
from common import cli  # noqa: E402
from common.device import seed_everything, select_device  # noqa: E402
from common.early_stopping import EarlyStopping  # noqa: E402
from common.plots import plot_curves  # noqa: E402
from common.runs import Run  # noqa: E402
from lab4_gcn import data as graphs  # noqa: E402

# torch_geometric 2.8 still calls torch.jit.script at import; the warning is its own, not ours.
warnings.filterwarnings("ignore", message=".*torch.jit.script.*is deprecated", category=FutureWarning)

METRICS = {("node", False): "accuracy", ("node", True): "micro_f1", ("link", False): "auc", ("link", True): "auc"}


def parse_args(argv=None):
    parser = cli.lab_parser("lab4_gcn", __doc__.splitlines()[0])
    parser.add_argument("--task", choices=["node", "link"], default="node")
    parser.add_argument("--dataset", choices=["cora", "citeseer", "ppi"], default="cora")
    parser.add_argument("--split", choices=["random", "public"], default="random",
                        help="cora/citeseer node split: random 60/20/20 (seeded) or Planetoid's public split")
    parser.add_argument("--layers", type=cli.positive_int, default=2, help="GCNConv layers (2)")
    parser.add_argument("--hidden", type=cli.positive_int, default=64, help="features of the hidden layers (64)")
    parser.add_argument("--activation", choices=["prelu", "tanh", "relu"], default="prelu")
    parser.add_argument("--self-loop", action=cli.argparse.BooleanOptionalAction, default=True,
                        help="GCN normalisation with added self-loops (on)")
    parser.add_argument("--pair-norm", action=cli.argparse.BooleanOptionalAction, default=False,
                        help="PairNorm after every hidden layer (off)")
    parser.add_argument("--drop-edge", type=cli.probability, default=0.0,
                        help="share of training edges dropped afresh every epoch (DropEdge; 0 = off)")
    parser.add_argument("--dropout", type=cli.probability, default=0.5)
    parser.add_argument("--lr", type=cli.positive_float, default=0.01)
    parser.add_argument("--weight-decay", type=float, default=None,
                        help="default: node 5e-4; link 0 (decay shrinks the embeddings the dot product scores)")
    parser.add_argument("--epochs", type=cli.positive_int, default=200)
    parser.add_argument("--wait", type=cli.non_negative_int, default=50,
                        help="stop once the best validation score has not improved for wait+1 epochs (50)")
    parser.add_argument("--graphs-per-batch", type=cli.positive_int, default=2, help="ppi: graphs per step (2)")
    args = parser.parse_args(argv)
    if args.weight_decay is None:
        args.weight_decay = 5e-4 if args.task == "node" else 0.0
    if args.split == "public" and (args.dataset == "ppi" or args.task == "link"):
        raise cli.UsageError("--split public is Planetoid's node split: it needs --task node and cora or citeseer")
    if args.split == "public" and not graphs.has_planetoid_files(Path(args.data_root), args.dataset):
        raise cli.UsageError(f"--split public needs Planetoid's raw files under {args.data_root}/Planetoid/"
                             f"{graphs.PLANETOID_NAMES[args.dataset]}/raw (the embedded Cora has no public split)")
    return args


class GCN(nn.Module):
    """`layers` GCNConv layers; between them the activation, optional PairNorm, and dropout."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, layers: int, activation: str,
                 self_loop: bool, pair_norm: bool, dropout: float):
        from torch_geometric.nn import GCNConv, PairNorm
        super().__init__()
        dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
        self.convs = nn.ModuleList(GCNConv(a, b, add_self_loops=self_loop) for a, b in zip(dims, dims[1:]))
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


# ---- node classification -------------------------------------------------------------------

def node_data(args):
    """(train, val, test) lists of graphs with a `mask` of the nodes to score, and the output size."""
    root = Path(args.data_root)
    if args.dataset == "ppi":
        splits = graphs.load_ppi(root)
        return [[g for g in split] for split in splits], splits[0].num_classes
    data = graphs.load_graph(root, args.dataset)
    if args.split == "random":
        order = torch.randperm(data.num_nodes, generator=torch.Generator().manual_seed(args.seed))
        n_train, n_val = int(0.6 * data.num_nodes), int(0.2 * data.num_nodes)
        parts = order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:]
        masks = [torch.zeros(data.num_nodes, dtype=torch.bool).index_fill_(0, p, True) for p in parts]
    else:
        masks = [data.train_mask, data.val_mask, data.test_mask]
    return [[data.clone().update({"mask": m})] for m in masks], int(data.y.max()) + 1


def node_pass(model, graph_list, args, device, optimizer=None):
    """One pass over graphs (batched for PPI); returns (loss, score) on the masked nodes."""
    from torch_geometric.loader import DataLoader
    training = optimizer is not None
    model.train(training)
    multi_label = args.dataset == "ppi"
    loader = DataLoader(graph_list, batch_size=args.graphs_per_batch, shuffle=training) if multi_label else graph_list
    total_loss, count, hits, tp, fp, fn = 0.0, 0, 0, 0, 0, 0
    for batch in loader:
        batch = batch.to(device)
        mask = batch.mask if "mask" in batch else torch.ones(batch.num_nodes, dtype=torch.bool, device=device)
        with torch.set_grad_enabled(training):
            out = model(batch.x, drop_edges(batch.edge_index, args.drop_edge, training), batch.batch)[mask]
            y = batch.y[mask]
            loss = F.binary_cross_entropy_with_logits(out, y) if multi_label else F.cross_entropy(out, y)
        if training:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        total_loss += loss.item() * len(y)
        count += len(y)
        if multi_label:
            predicted, truth = out > 0, y > 0.5
            tp += (predicted & truth).sum().item()
            fp += (predicted & ~truth).sum().item()
            fn += (~predicted & truth).sum().item()
        else:
            hits += (out.argmax(1) == y).sum().item()
    score = 2 * tp / max(2 * tp + fp + fn, 1) if multi_label else hits / count
    return total_loss / count, score


# ---- link prediction -----------------------------------------------------------------------

def link_data(args):
    """(train, val, test): lists of graphs with `edge_index` (message passing) and, for val/test,
    `edge_label_index`/`edge_label` (held-out edges and as many non-edges); train graphs'
    positives are their message-passing edges."""
    from torch_geometric.transforms import RandomLinkSplit
    root = Path(args.data_root)
    torch.manual_seed(args.seed)
    if args.dataset == "ppi":
        train_graphs, val_graphs, test_graphs = graphs.load_ppi(root)
        hold_out = RandomLinkSplit(num_val=0.0, num_test=0.2, is_undirected=True, add_negative_train_samples=False)
        return ([g for g in train_graphs], [hold_out(g)[2] for g in val_graphs],
                [hold_out(g)[2] for g in test_graphs]), args.hidden
    data = graphs.load_graph(root, args.dataset)
    split = RandomLinkSplit(num_val=0.1, num_test=0.1, is_undirected=True, add_negative_train_samples=False)
    train, val, test = split(data)
    return ([train], [val], [test]), args.hidden


def link_pass(model, graph_list, args, device, optimizer=None):
    """Training: positives = message-passing edges, negatives sampled afresh. Evaluation: the held-out
    labelled edges. Returns (loss, auc, average precision, accuracy at 0.5)."""
    from sklearn.metrics import average_precision_score, roc_auc_score
    from torch_geometric.utils import negative_sampling
    training = optimizer is not None
    model.train(training)
    order = torch.randperm(len(graph_list)).tolist() if training else range(len(graph_list))
    losses, scores, labels = [], [], []
    for i in order:
        g = graph_list[i].to(device)
        with torch.set_grad_enabled(training):
            z = model(g.x, drop_edges(g.edge_index, args.drop_edge, training))
            if training:
                positive = g.edge_index
                negative = negative_sampling(g.edge_index, g.num_nodes, positive.size(1))
                pairs = torch.cat([positive, negative], 1)
                target = torch.cat([torch.ones(positive.size(1)), torch.zeros(negative.size(1))]).to(device)
            else:
                pairs, target = g.edge_label_index, g.edge_label.float()
            logits = (z[pairs[0]] * z[pairs[1]]).sum(-1)
            loss = F.binary_cross_entropy_with_logits(logits, target)
        if training:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        losses.append(loss.item() * len(target))
        scores.append(logits.detach().sigmoid().cpu())
        labels.append(target.cpu())
    scores, labels = torch.cat(scores).numpy(), torch.cat(labels).numpy()
    return (sum(losses) / len(labels), roc_auc_score(labels, scores), average_precision_score(labels, scores),
            float(((scores > 0.5) == (labels > 0.5)).mean()))


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = select_device(args.device)
    seed_everything(args.seed)
    splits, out_dim = (node_data if args.task == "node" else link_data)(args)
    train, val, test = ([g.to(device) for g in split] for split in splits)  # once, not every epoch
    metric = METRICS[(args.task, args.dataset == "ppi")]
    model = GCN(train[0].num_features, args.hidden, out_dim, args.layers, args.activation,
                args.self_loop, args.pair_norm, args.dropout).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    run_pass = node_pass if args.task == "node" else link_pass
    run = Run("lab4_gcn", args, device)

    stopper = EarlyStopping(args.wait, mode="max")
    for epoch in tqdm(range(1, args.epochs + 1), desc="lab4", disable=args.quiet, leave=False):
        train_loss, train_score = run_pass(model, train, args, device, optimizer)[:2]
        val_loss, val_score = run_pass(model, val, args, device)[:2]
        run.log(epoch, train_loss=train_loss, train_score=train_score, val_loss=val_loss, val_score=val_score)
        status = stopper.update(model, epoch, val_score, losses=(train_loss, val_loss), tiebreak=val_loss)
        if status != "ok":
            break

    history = run.history
    title = f"{args.dataset} {args.task}: {args.layers} layers, {args.activation}, self-loop {args.self_loop}, " \
            f"pair-norm {args.pair_norm}, drop-edge {args.drop_edge:g}"
    plot_curves(run.path("loss_curves.png"), {"train": history["train_loss"], "validation": history["val_loss"]},
                ylabel="loss", title=title)
    plot_curves(run.path("score_curves.png"), {"train": history["train_score"], "validation": history["val_score"]},
                ylabel=metric, title=title)
    summary = {"metric": metric, "best_val_loss": min(history["val_loss"]), "best_val_score": None,
               "test_score": None, "best_epoch": stopper.best_epoch}
    if stopper.restore_best(model, run.path("best.pt")):
        test_result = run_pass(model, test, args, device)
        summary.update(best_val_score=stopper.best, test_score=test_result[1])
        if args.task == "link":
            summary.update(test_average_precision=test_result[2], test_accuracy=test_result[3])
    return run.finish(status, **summary, epochs_run=len(history["epoch"]))


if __name__ == "__main__":
    cli.run(main)
