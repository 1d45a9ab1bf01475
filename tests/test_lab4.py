import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from common.data import forget_reused, package_file
from common.schedules import schedule_from_args
from lab4_gcn import data as graphs
from lab4_gcn import train
from lab4_gcn.model import GCN, drop_edges, link_logits

ROOT = Path(__file__).resolve().parents[1]
SHARED_PLANETOID = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_cora = pytest.mark.skipif(package_file(*graphs.EMBEDDED_CORA) is None, reason="graphdatascience not installed")
needs_shared = pytest.mark.skipif(not (SHARED_PLANETOID / "Planetoid/Cora/raw").exists(),
                                  reason="../shared/data/Planetoid is absent")
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")


def score_of_saved_weights(run_dir: Path) -> float:
    """The test score of the weights in best.pt, rebuilt here from config.json: accuracy, micro-F1 or ROC-AUC."""
    from sklearn.metrics import f1_score, roc_auc_score
    c = json.loads((run_dir / "config.json").read_text())
    root = Path(c["data_root"])
    if c["task"] == "node":
        (_, _, test), out_dim = graphs.node_data(root, c["dataset"], c["split"], c["seed"])
    else:
        (_, _, test), out_dim = graphs.link_data(root, c["dataset"], c["seed"]), c["hidden"]
    model = GCN(test[0].num_features, c["hidden"], out_dim, c["layers"], c["activation"], c["self_loop"],
                c["pair_norm"], c["dropout"])
    model.load_state_dict(torch.load(run_dir / "best.pt"))
    model.eval()
    with torch.no_grad():
        outputs = [(model(g.x, g.edge_index), g) for g in test]
    if c["task"] == "link":
        logits = torch.cat([link_logits(z, g.edge_label_index) for z, g in outputs])
        return roc_auc_score(torch.cat([g.edge_label for _, g in outputs]).numpy(), logits.numpy())
    if c["dataset"] == "ppi":
        predicted = torch.cat([z > 0 for z, _ in outputs]).numpy()
        return f1_score(torch.cat([g.y for _, g in outputs]).numpy(), predicted, average="micro")
    (z, g), = outputs
    return (z[g.mask].argmax(1) == g.y[g.mask]).double().mean().item()


def row_normalised(x: torch.Tensor) -> bool:
    sums = x.sum(1)
    return bool(torch.allclose(sums[sums > 0], torch.ones(1)))


@needs_cora
def test_embedded_cora_shape(tmp_path):
    data = graphs.load_embedded_cora()
    assert (data.num_nodes, data.num_features, int(data.y.max()) + 1, data.edge_index.size(1)) == (2708, 1433, 7, 10556)
    assert data.is_undirected() and not data.has_self_loops()
    assert set(data.x.unique().tolist()) == {0.0, 1.0}  # binary words, as in Planetoid's files
    assert row_normalised(graphs.load_graph(tmp_path, "cora").x)


@needs_shared
def test_planetoid_raw_files_load_through_the_data_root(tmp_path):
    for name in ("Cora", "CiteSeer"):
        raw = tmp_path / "Planetoid" / name / "raw"
        raw.mkdir(parents=True)
        for f in (SHARED_PLANETOID / "Planetoid" / name / "raw").iterdir():
            (raw / f.name).symlink_to(f)
    cora = graphs.load_graph(tmp_path, "cora")
    citeseer = graphs.load_graph(tmp_path, "citeseer")
    assert (cora.num_nodes, cora.edge_index.size(1), int(cora.train_mask.sum())) == (2708, 10556, 140)
    assert citeseer.num_nodes == 3327 and citeseer.num_features == 3703
    assert row_normalised(cora.x) and row_normalised(citeseer.x)  # as the embedded Cora: same flags, same inputs
    summary = train.main(["--dataset", "citeseer", "--split", "public", "--data-root", str(tmp_path),
                          "--epochs", "30", "--quiet", "--out", str(tmp_path / "run")])
    assert summary["test_score"] > 0.5  # six classes


def write_ppi(root, graphs_per_split=(3, 1, 1), nodes=30, seed=0):
    """PyG's PPI raw layout with random graphs whose labels follow their features."""
    raw = root / "PPI" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for split, count in zip(("train", "valid", "test"), graphs_per_split, strict=True):
        n = count * nodes
        feats = rng.normal(size=(n, 50)).astype(np.float32)
        labels = (feats[:, :121 % 50] > 0).astype(np.float32)
        labels = np.concatenate([labels, np.zeros((n, 121 - labels.shape[1]), np.float32)], 1)
        graph_id = np.repeat(np.arange(1, count + 1), nodes)
        links = []
        for g in range(count):
            base = g * nodes
            for i in range(nodes):
                for j in rng.choice(nodes, 3, replace=False):
                    if i != j:
                        links.append({"source": base + i, "target": base + int(j)})
        graph = {"directed": False, "multigraph": False, "graph": {},
                 "nodes": [{"id": i} for i in range(n)], "links": links}
        (raw / f"{split}_graph.json").write_text(json.dumps(graph))
        np.save(raw / f"{split}_feats.npy", feats)
        np.save(raw / f"{split}_labels.npy", labels)
        np.save(raw / f"{split}_graph_id.npy", graph_id)
    return root


def test_ppi_fixture_loads_and_multilabel_and_link_runs_work(tmp_path):
    root = write_ppi(tmp_path / "data")
    train_set, val_set, test_set = graphs.load_ppi(root)
    assert (len(train_set), len(val_set), len(test_set)) == (3, 1, 1)
    assert train_set[0].x.shape == (30, 50) and train_set[0].y.shape == (30, 121)
    node = train.main(["--dataset", "ppi", "--data-root", str(root), "--epochs", "40", "--hidden", "32",
                       "--dropout", "0", "--quiet", "--out", str(tmp_path / "node")])
    assert node["metric"] == "micro_f1" and node["test_score"] > 0.5
    assert node["test_score"] == pytest.approx(score_of_saved_weights(tmp_path / "node"))
    link = train.main(["--dataset", "ppi", "--task", "link", "--data-root", str(root), "--epochs", "5",
                       "--quiet", "--out", str(tmp_path / "link")])
    assert link["metric"] == "auc"
    assert link["test_score"] == pytest.approx(score_of_saved_weights(tmp_path / "link"))


@needs_cora
def test_link_split_keeps_held_out_edges_out_of_message_passing():
    train_graphs, val_graphs, test_graphs = graphs.link_data(Path("data"), "cora", seed=0)
    def as_set(edge_index):
        return {tuple(sorted(e)) for e in edge_index.t().tolist()}
    message_passing = as_set(train_graphs[0].edge_index)
    val_pos = as_set(val_graphs[0].edge_label_index[:, val_graphs[0].edge_label == 1])
    test_pos = as_set(test_graphs[0].edge_label_index[:, test_graphs[0].edge_label == 1])
    assert val_pos and test_pos and not val_pos & test_pos
    assert not (val_pos | test_pos) & message_passing  # training never passes messages over held-out edges
    assert as_set(val_graphs[0].edge_index) == message_passing
    assert as_set(test_graphs[0].edge_index) == message_passing | val_pos  # PyG's rule: test may use val edges
    assert not test_pos & as_set(test_graphs[0].edge_index)
    for split in (val_graphs[0], test_graphs[0]):
        assert int((split.edge_label == 0).sum()) == int((split.edge_label == 1).sum())
    assert message_passing | val_pos | test_pos == as_set(graphs.load_embedded_cora().edge_index)


def test_self_loop_flag_changes_propagation():
    torch.manual_seed(0)
    x = torch.eye(3)
    edges = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])  # a path 0 - 1 - 2
    outputs = {}
    for loop in (True, False):
        model = GCN(3, 4, 3, 1, "relu", loop, False, 0.0)
        conv = model.convs[0]
        with torch.no_grad():
            conv.lin.weight.copy_(torch.eye(3))
            conv.bias.zero_()
        outputs[loop] = model.eval()(x, edges)
    # without self-loops a node's own features never reach its output; with them they do (D^-1/2 (A+I) D^-1/2)
    assert torch.allclose(outputs[False].diagonal(), torch.zeros(3))
    assert torch.allclose(outputs[True].diagonal(), torch.tensor([1 / 2, 1 / 3, 1 / 2]))
    assert torch.allclose(outputs[False][1, 0], torch.tensor(1 / 2 ** 0.5))


def test_pair_norm_and_drop_edge_are_in_the_model_and_the_graph():
    model = GCN(5, 8, 2, 3, "prelu", True, True, 0.1)
    assert len(model.convs) == 3 and len(model.norms) == 2 and len(model.activations) == 2
    edges = torch.tensor([[i, i + 1] for i in range(99)] + [[i + 1, i] for i in range(99)]).t()
    torch.manual_seed(0)
    kept = drop_edges(edges, 0.5, training=True)
    assert 0.3 * 198 < kept.size(1) < 0.7 * 198
    assert {tuple(e) for e in kept.t().tolist()} == {(b, a) for a, b in kept.t().tolist()}  # still undirected
    assert drop_edges(edges, 0.5, training=False) is edges


@needs_cora
def test_tiny_node_run_beats_the_majority_class(tmp_path):
    summary = train.main(["--epochs", "60", "--hidden", "16", "--quiet", "--out", str(tmp_path / "run")])
    data = graphs.load_embedded_cora()
    majority = torch.bincount(data.y).max().item() / data.num_nodes
    assert summary["metric"] == "accuracy" and summary["test_score"] > majority + 0.3
    header = (tmp_path / "run/history.csv").read_text().splitlines()[0]
    assert header == "epoch,train_loss,train_score,val_loss,val_score,lr"
    assert {"metric", "best_val_loss", "best_val_score", "test_score", "best_epoch"} <= set(summary)
    rows = (tmp_path / "run/history.csv").read_text().splitlines()[1:]
    best = rows[summary["best_epoch"] - 1].split(",")
    assert (float(best[3]), float(best[4])) == pytest.approx((summary["best_val_loss"], summary["best_val_score"]))


@needs_cora
@pytest.mark.parametrize("flags", [["--no-self-loop", "--pair-norm", "--drop-edge", "0.3", "--activation", "tanh"],
                                   ["--task", "link", "--layers", "3", "--activation", "relu", "--pair-norm"]])
def test_flag_combinations_run_and_test_their_best_weights(tmp_path, flags):
    summary = train.main([*flags, "--epochs", "5", "--quiet", "--out", str(tmp_path / "r")])
    assert summary["status"] == "ok"
    assert summary["test_score"] == pytest.approx(score_of_saved_weights(tmp_path / "r"))


@pytest.mark.parametrize("flags, message", [
    (["--dataset", "pubmed"], "invalid choice: 'pubmed'"),
    (["--drop-edge", "1.5"], "--drop-edge: must be a number in [0, 1), got '1.5'"),
    (["--layers", "0"], "--layers: must be a positive integer, got '0'"),
    (["--split", "public"], "--split public needs Planetoid's raw files"),
    (["--task", "link", "--split", "public"], "--split public is Planetoid's node split"),
    (["--dataset", "ppi"], "/empty does not exist (or is not a folder)"),
    (["--dataset", "citeseer"], "/empty does not exist (or is not a folder)"),
    (["--weight-decay", "-1"], "--weight-decay: must be a number >= 0, got '-1'"),
    (["--weight-decay", "nan"], "--weight-decay: must be a number >= 0, got 'nan'"),
    (["--task", "link", "--label-smoothing", "0.1"], "--label-smoothing smooths the classes of cross-entropy"),
    (["--lr-schedule", "exponential"], "invalid choice: 'exponential'"),
])
def test_bad_input_exits_2(tmp_path, run_cli, monkeypatch, flags, message):
    monkeypatch.setenv("LABS_MIRROR", f"file://{tmp_path}/offline")  # common.fetch never reaches the network
    code, err = run_cli(train.main, [*flags, "--data-root", str(tmp_path / "empty"), "--out", str(tmp_path / "bad")])
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "bad").exists()


def test_regularizer_tables_mark_best_and_second(tmp_path, run_cli):
    from lab4_gcn import tables
    rows = []
    for i, (loop, norm, drop) in enumerate([(a, b, c) for a in (False, True) for b in (False, True) for c in (0, 0.2)]):
        for dataset, task, score in (("cora", "node", 0.5 + i / 100), ("cora", "link", 0.9 - i / 100)):
            rows.append({"dataset": dataset, "task": task, "self_loop": loop, "pair_norm": norm, "drop_edge": drop,
                         "activation": "tanh", "best_val_score": score, "status": "ok"})
    import pandas as pd
    pd.DataFrame(rows).to_csv(tmp_path / "results.csv", index=False)
    tables.main([str(tmp_path)])
    lines = (tmp_path / "table_regularizers_tanh.md").read_text().splitlines()
    assert lines[2] == "| params | cora-N | cora-L |"
    assert lines[4] == "| FFF | 0.5000 | **0.9000** |" and lines[5] == "| FFT | 0.5100 | *0.8900* |"
    assert lines[-1] == "| TTT | **0.5700** | 0.8300 |" and lines[-2] == "| TTF | *0.5600* | 0.8400 |"
    assert (tmp_path / "table_regularizers_tanh.csv").exists()
    code, err = run_cli(tables.main, [str(tmp_path / "none")])
    assert code == 2 and "run sweeps/lab4_regularizers.sh first" in err[0]


@needs_cora
def test_patience_wait_alias_and_weight_decay_flags(tmp_path):
    summary = train.main(["--epochs", "300", "--wait", "3", "--lr", "0.05", "--quiet", "--out", str(tmp_path / "a")])
    assert summary["status"] == "early_stopped" and summary["epochs_run"] == summary["best_epoch"] + 4
    assert json.loads((tmp_path / "a/config.json").read_text())["patience"] == 3
    node = train.parse_args([])
    link = train.parse_args(["--task", "link"])
    assert (node.weight_decay, link.weight_decay) == (5e-4, 0.0)
    assert train.parse_args(["--task", "link", "--weight-decay", "0.01"]).weight_decay == 0.01


def test_ppi_graphs_per_batch(tmp_path):
    root = write_ppi(tmp_path / "data", graphs_per_split=(4, 1, 1))
    train_graphs, _, _ = graphs.load_ppi(root)
    args = train.parse_args(["--dataset", "ppi", "--graphs-per-batch", "4"])
    model = GCN(50, 8, 121, 2, "prelu", True, True, 0.0)
    seen = []
    model.register_forward_pre_hook(lambda module, inputs: seen.append(int(inputs[2].max()) + 1))
    optimizer = torch.optim.Adam(model.parameters())
    train.train_one_epoch(model, optimizer, schedule_from_args(optimizer, args, 1), list(train_graphs), args)
    assert seen == [4]  # one step over a batch of four graphs


def test_missing_and_corrupt_graph_files_are_one_line_and_create_nothing(tmp_path, run_cli, monkeypatch, capsys):
    monkeypatch.setenv("LABS_MIRROR", f"file://{tmp_path}/offline")  # common.fetch never reaches the network
    root = tmp_path / "root"
    root.mkdir()
    code, err = run_cli(train.main, ["--dataset", "ppi", "--data-root", str(root), "--out", str(tmp_path / "a")])
    assert code == 2 and len(err) == 1 and "PPI is missing at" in err[0] and "download failed" in err[0]
    assert capsys.readouterr().out == ""  # no stray "Downloading ..." line
    code, err = run_cli(train.main, ["--dataset", "citeseer", "--data-root", str(root), "--out", str(tmp_path / "b")])
    assert code == 2 and len(err) == 1 and "CiteSeer is missing" in err[0]
    code, err = run_cli(train.main, ["--dataset", "citeseer", "--data-root", str(tmp_path / "nowhere"),
                                     "--out", str(tmp_path / "c")])
    assert code == 2 and "does not exist" in err[0] and not (tmp_path / "nowhere").exists()
    raw = root / "Planetoid" / "CiteSeer" / "raw"
    assert not raw.exists()  # a failed download leaves no folder that looks like a dataset
    raw.mkdir(parents=True)
    for part in graphs.PLANETOID_PARTS:
        (raw / f"ind.citeseer.{part}").write_bytes(b"\x80\x04garbage")
    code, err = run_cli(train.main, ["--dataset", "citeseer", "--data-root", str(root), "--out", str(tmp_path / "d")])
    assert code == 2 and len(err) == 1 and "corrupt Planetoid files" in err[0]
    assert not any((tmp_path / name).exists() for name in "abcd")


def test_a_crafted_planetoid_pickle_cannot_run_code(tmp_path, run_cli):
    import pickle

    class Payload:
        def __reduce__(self):
            return (open, (str(tmp_path / "marker"), "w"))  # would create a file when unpickled
    raw = tmp_path / "Planetoid" / "Cora" / "raw"
    raw.mkdir(parents=True)
    for part in graphs.PLANETOID_PARTS:
        (raw / f"ind.cora.{part}").write_bytes(pickle.dumps(Payload()))
    code, err = run_cli(train.main, ["--dataset", "cora", "--data-root", str(tmp_path), "--out", str(tmp_path / "r")])
    assert code == 2 and len(err) == 1 and "corrupt Planetoid files" in err[0] and "io.open" in err[0]
    assert not (tmp_path / "marker").exists() and not (tmp_path / "r").exists()


def test_a_crafted_ppi_processed_file_is_never_loaded(tmp_path):
    import pickle

    class Payload:
        def __reduce__(self):
            return (open, (str(tmp_path / "marker"), "w"))
    root = write_ppi(tmp_path / "data")
    (root / "PPI" / "processed").mkdir(parents=True, exist_ok=True)
    for name in ("train.pt", "val.pt", "test.pt", "pre_filter.pt", "pre_transform.pt"):
        (root / "PPI" / "processed" / name).write_bytes(pickle.dumps(Payload()))
    summary = train.main(["--dataset", "ppi", "--data-root", str(root), "--epochs", "2", "--quiet",
                          "--out", str(tmp_path / "run")])
    assert summary["status"] == "ok" and not (tmp_path / "marker").exists()


@pytest.mark.parametrize("task, flags", [("node", ["--lr-schedule", "plateau"]), ("link", ["--lr-schedule", "cosine"])])
def test_an_interrupted_run_resumes_to_the_uninterrupted_history_and_summary(interrupted_and_resumed, task, flags):
    """link draws its negative edges from Python's random module: last.pt keeps that stream too; the
    schedule's state (plateau's halvings) is in it as well."""
    interrupted_and_resumed(train, ["--task", task, "--epochs", "6", "--hidden", "8", "--drop-edge", "0.2", *flags])


@needs_cora
def test_the_schedule_sets_the_rate_of_every_epoch(tmp_path):
    train.main(["--epochs", "10", "--hidden", "8", "--lr-schedule", "cosine", "--warmup", "0.2", "--quiet",
                "--out", str(tmp_path / "cos")])
    rates = pd.read_csv(tmp_path / "cos/history.csv")["lr"].tolist()
    assert rates[:3] == pytest.approx([0.0, 0.005, 0.01])  # one step an epoch: 2 of warmup
    assert rates[2:] == sorted(rates[2:], reverse=True) and rates[-1] < 0.01 * 0.05


@needs_cora
def test_label_smoothing_is_in_the_training_loss_only(tmp_path):
    args = train.parse_args(["--label-smoothing", "0.2"])
    logits, target = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([0])
    log_p = logits.log_softmax(1)[0]
    smoothed = 0.8 * -log_p[0] - 0.2 * log_p.mean()
    assert train.loss_of(logits, target, args, training=True).item() == pytest.approx(smoothed.item())
    assert train.loss_of(logits, target, args).item() == pytest.approx(-log_p[0].item())
    summaries = {e: train.main(["--epochs", "3", "--hidden", "8", "--dropout", "0", "--label-smoothing", e, "--quiet",
                                "--out", str(tmp_path / e)]) for e in ("0", "0.3")}
    plain, smooth = (pd.read_csv(tmp_path / e / "history.csv") for e in ("0", "0.3"))
    assert (smooth["train_loss"] != plain["train_loss"]).all()
    assert summaries["0.3"]["test_score"] == pytest.approx(score_of_saved_weights(tmp_path / "0.3"))


@needs_cora
def test_a_sweep_reads_the_graph_once_and_its_points_end_as_when_run_alone(reused_and_fresh):
    """Seeds 0 and 1 split differently: each point splits the graph read once by its own seed."""
    flags = ["--epochs", "3", "--hidden", "8"]
    reused_and_fresh(train, [[*flags, "--task", "node"], [*flags, "--task", "link", "--drop-edge", "0.2"],
                             [*flags, "--task", "node", "--seed", "1", "--pair-norm"],
                             [*flags, "--task", "link", "--seed", "1", "--activation", "tanh"]],
                     (graphs, "read_cora_parquet"))


def same_graphs(a: list, b: list) -> bool:
    return all(torch.equal(x[key], y[key]) for x, y in zip(a, b, strict=True) for key in x.keys())


@needs_cora
def test_a_run_that_changes_its_graph_in_place_cannot_change_the_next_points():
    changed = graphs.load_graph(Path("data"), "cora")
    for tensor in (changed.x, changed.y, changed.edge_index):
        tensor.zero_()
    kept = graphs.load_graph(Path("data"), "cora")
    forget_reused()
    assert same_graphs([kept], [graphs.load_graph(Path("data"), "cora")]) and kept.x.sum() > 0


def test_ppi_is_read_once_copied_for_each_run_and_read_again_when_a_file_changes(tmp_path):
    root = write_ppi(tmp_path / "data")
    for split in graphs.load_ppi(root):  # a run changing its graphs in place
        for graph in split:
            graph.x.zero_()
            graph.edge_index.zero_()
    kept = graphs.load_ppi(root)
    forget_reused()
    assert all(same_graphs(k, f) for k, f in zip(kept, graphs.load_ppi(root), strict=True))
    np.save(root / "PPI/raw/train_feats.npy", np.ones((90, 50)))  # float64: another size, whatever the clock
    assert torch.equal(graphs.load_ppi(root)[0][0].x, torch.ones(30, 50))


def test_the_quick_reuse_benchmark_runs_and_prints_its_ratios(bench):
    ratios = bench("sweep_reuse.py", "--quick")[-1]
    assert ratios.startswith("a/c ") and " b/c " in ratios
    assert float(ratios.split()[-1]) == 0  # reading once changes no number
