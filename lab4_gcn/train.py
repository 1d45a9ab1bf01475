"""Lab 4: GCN node classification and link prediction (report, Lab 4).

    python lab4_gcn/train.py --task node --dataset cora
    python lab4_gcn/train.py --task link --dataset cora --pair-norm --drop-edge 0.2

node: Cora/CiteSeer single-label (cross-entropy, accuracy); PPI multi-label over its 20/2/2
graphs (BCE, micro-F1). link: a GCN encoder and a dot-product decoder; the validation and test
edges are held out of the message-passing graph; fresh negative edges every epoch (ROC-AUC).
The weights of the best validation score (ties: lower loss) give the test score.
"""
import argparse
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

# At import, before any seeding: importing sklearn draws from `random`, which PyG's negative sampling also
# uses, so a lazy import made a run's numbers depend on whether an earlier run in the process had imported it.
from sklearn.metrics import average_precision_score, roc_auc_score
from tqdm import tqdm

from common import cli
from common.device import seed_everything, select_device
from common.early_stopping import EarlyStopping
from common.plots import plot_train_val
from common.runs import Run
from common.schedules import schedule_from_args
from lab4_gcn import data as graphs
from lab4_gcn.model import GCN, drop_edges, link_logits

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
    parser.add_argument("--self-loop", action=argparse.BooleanOptionalAction, default=True,
                        help="GCN normalisation with added self-loops (on)")
    parser.add_argument("--pair-norm", action=argparse.BooleanOptionalAction, default=False,
                        help="PairNorm after every hidden layer (off)")
    parser.add_argument("--drop-edge", type=cli.probability, default=0.0,
                        help="share of training edges dropped afresh every epoch (DropEdge; 0 = off)")
    parser.add_argument("--dropout", type=cli.probability, default=0.5)
    parser.add_argument("--lr", type=cli.positive_float, default=0.01)
    cli.add_schedule_flags(parser)
    cli.add_label_smoothing(parser)
    parser.add_argument("--weight-decay", type=cli.non_negative_float, default=None,
                        help="default: node 5e-4; link 0 (decay shrinks the embeddings the dot product scores)")
    parser.add_argument("--epochs", type=cli.positive_int, default=200)
    cli.add_patience(parser, 50, "validation score (ties: lower loss)", wait_alias=True)
    cli.add_checkpointing(parser, every=25)
    parser.add_argument("--graphs-per-batch", type=cli.positive_int, default=2, help="ppi: graphs per step (2)")
    args = parser.parse_args(argv)
    if args.weight_decay is None:
        args.weight_decay = 5e-4 if args.task == "node" else 0.0
    if args.split == "public" and (args.dataset == "ppi" or args.task == "link"):
        raise cli.UsageError("--split public is Planetoid's node split: it needs --task node and cora or citeseer")
    if args.label_smoothing and (args.dataset == "ppi" or args.task == "link"):
        raise cli.UsageError("--label-smoothing smooths the classes of cross-entropy: it needs --task node and "
                             "cora or citeseer")
    return args


def resolve_inputs(args) -> None:
    """The files the flags need, looked up before anything is written (by main, and by a sweep for every point)."""
    if args.split == "public" and not graphs.has_planetoid_files(Path(args.data_root), args.dataset):
        raise cli.UsageError(f"--split public needs Planetoid's raw files under {args.data_root}/Planetoid/"
                             f"{graphs.PLANETOID_NAMES[args.dataset]}/raw (the embedded Cora has no public split)")


def batches(graphs_: list, args, training: bool):
    """PPI node batches of --graphs-per-batch graphs; link training visits its graphs in a random order."""
    if args.task == "node" and args.dataset == "ppi":
        from torch_geometric.loader import DataLoader
        return DataLoader(graphs_, batch_size=args.graphs_per_batch, shuffle=training)
    if args.task == "link" and training:
        return [graphs_[i] for i in torch.randperm(len(graphs_)).tolist()]
    return graphs_


def outputs(model, graph, args, training: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, targets) of what one graph scores. node: its masked nodes. link, training: its
    message-passing edges and as many non-edges sampled afresh; evaluation: its held-out labelled pairs."""
    z = model(graph.x, drop_edges(graph.edge_index, args.drop_edge, training), graph.batch)
    if args.task == "node":
        mask = graph.mask if "mask" in graph else torch.ones(graph.num_nodes, dtype=torch.bool, device=z.device)
        return z[mask], graph.y[mask]
    if not training:
        return link_logits(z, graph.edge_label_index), graph.edge_label.float()
    from torch_geometric.utils import negative_sampling
    positive = graph.edge_index
    negative = negative_sampling(graph.edge_index, graph.num_nodes, positive.size(1))
    target = torch.cat([torch.ones(positive.size(1)), torch.zeros(negative.size(1))]).to(z.device)
    return link_logits(z, torch.cat([positive, negative], 1)), target


def loss_of(logits, target, args, training: bool = False) -> torch.Tensor:
    if args.task == "node" and args.dataset != "ppi":
        return F.cross_entropy(logits, target, label_smoothing=args.label_smoothing if training else 0.0)
    return F.binary_cross_entropy_with_logits(logits, target)  # PPI's 121 labels, or edge / non-edge


def for_scores(out: torch.Tensor, args) -> torch.Tensor:
    """What scores() reads of one batch, on the CPU: edge probabilities (link), else the logits."""
    out = out.detach()
    return (out.sigmoid() if args.task == "link" else out).cpu()


def scores(outs: torch.Tensor, target: torch.Tensor, args) -> dict:
    """score: accuracy (cora/citeseer nodes), micro-F1 (PPI nodes) or ROC-AUC (links, with average
    precision and accuracy at probability 0.5). outs: for_scores() of every batch, concatenated."""
    if args.task == "link":
        probability, truth = outs.numpy(), target.numpy()
        return {"score": roc_auc_score(truth, probability),
                "average_precision": average_precision_score(truth, probability),
                "accuracy": float(((probability > 0.5) == (truth > 0.5)).mean())}
    if args.dataset == "ppi":
        predicted, truth = outs > 0, target > 0.5
        tp, fp, fn = ((predicted & truth).sum().item(), (predicted & ~truth).sum().item(),
                      (~predicted & truth).sum().item())
        return {"score": 2 * tp / max(2 * tp + fp + fn, 1)}
    return {"score": (outs.argmax(1) == target).sum().item() / len(target)}


def train_one_epoch(model, optimizer, scheduler, graphs_: list, args) -> dict:
    """One pass over the training graphs: mean loss and score of what they score, and lr, the rate of its
    last step."""
    model.train()
    total_loss, outs, targets = 0.0, [], []
    for graph in batches(graphs_, args, training=True):
        out, target = outputs(model, graph, args, training=True)
        loss = loss_of(out, target, args, training=True)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
        total_loss += loss.item() * len(target)
        outs.append(for_scores(out, args))
        targets.append(target.cpu())
    outs, targets = torch.cat(outs), torch.cat(targets)
    return {"loss": total_loss / len(targets), **scores(outs, targets, args), "lr": lr}


@torch.no_grad()
def evaluate(model, graphs_: list, args) -> dict:
    """Mean loss and score over the graphs' validation or test nodes / labelled pairs."""
    model.eval()
    total_loss, outs, targets = 0.0, [], []
    for graph in batches(graphs_, args, training=False):
        out, target = outputs(model, graph, args, training=False)
        total_loss += loss_of(out, target, args).item() * len(target)
        outs.append(for_scores(out, args))
        targets.append(target.cpu())
    outs, targets = torch.cat(outs), torch.cat(targets)
    return {"loss": total_loss / len(targets), **scores(outs, targets, args)}


def main(argv=None) -> dict:
    args = parse_args(argv)
    resolve_inputs(args)
    root = Path(args.data_root)
    device = select_device(args.device)
    seed_everything(args.seed)
    if args.task == "node":
        splits, out_dim = graphs.node_data(root, args.dataset, args.split, args.seed)
    else:
        splits, out_dim = graphs.link_data(root, args.dataset, args.seed), args.hidden
    train, val, test = ([g.to(device) for g in split] for split in splits)  # once, not every epoch
    metric = METRICS[(args.task, args.dataset == "ppi")]
    model = GCN(train[0].num_features, args.hidden, out_dim, args.layers, args.activation,
                args.self_loop, args.pair_norm, args.dropout).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scheduler = schedule_from_args(optimizer, args, len(batches(train, args, training=False)), mode="max")
    run = Run("lab4_gcn", args, device)

    stopper = EarlyStopping(args.patience, mode="max")
    state = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "stopper": stopper}
    first_epoch, status = run.resume(**state), "ok"
    for epoch in tqdm(range(first_epoch, args.epochs + 1), desc="lab4", disable=args.quiet, leave=False):
        train_metrics = train_one_epoch(model, optimizer, scheduler, train, args)
        val_metrics = evaluate(model, val, args)
        scheduler.epoch_end(val_metrics["score"])
        run.log(epoch=epoch, train_loss=train_metrics["loss"], train_score=train_metrics["score"],
                val_loss=val_metrics["loss"], val_score=val_metrics["score"], lr=train_metrics["lr"])
        status = stopper.update(model, epoch, val_metrics["score"], losses=(train_metrics["loss"], val_metrics["loss"]),
                                tiebreak=val_metrics["loss"])
        if status != "ok":
            break
        run.checkpoint(epoch, **state)
    run.epochs_done()

    history = run.history
    title = f"{args.dataset} {args.task}: {args.layers} layers, {args.activation}, self-loop {args.self_loop}, " \
            f"pair-norm {args.pair_norm}, drop-edge {args.drop_edge:g}"
    plot_train_val(run.path("loss_curves.png"), history, "loss", "loss", title=title)
    plot_train_val(run.path("score_curves.png"), history, "score", metric, title=title)
    summary = {"metric": metric, "best_val_loss": None, "best_val_score": None, "test_score": None,
               "best_epoch": stopper.best_epoch}
    if stopper.restore_best(model, run.path("best.pt")):
        test_metrics = evaluate(model, test, args)
        summary.update(best_val_loss=history["val_loss"][stopper.best_epoch - 1], best_val_score=stopper.best,
                       test_score=test_metrics["score"])
        if args.task == "link":
            summary.update(test_average_precision=test_metrics["average_precision"],
                           test_accuracy=test_metrics["accuracy"])
    return run.finish(status, **summary, epochs_run=len(history["epoch"]))


if __name__ == "__main__":
    cli.run(main)
