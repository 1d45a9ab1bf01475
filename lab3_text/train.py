"""Lab 3: sentiment classification with RNN, LSTM, Transformer encoder or fine-tuned BERT (report, Lab 3).

    python lab3_text/train.py --model lstm --glove --train-rate 0.5

Texts are split into train / validation / test; --train-rate keeps a seeded share of every class
of the training split. rnn/lstm/transformer read word ids of a vocabulary built from the training
texts; bert reads its own tokenizer's ids. Batches group texts of similar length and pad each
batch only to its longest text. The weights of the best validation accuracy (ties: the lower
validation loss) give the test accuracy. With --teacher, the training targets are mixed with a
finished run's predicted probabilities on the same training texts (knowledge distillation).
"""
import argparse
import json
import math
import pickle
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from common import cli, distributed
from common.device import allocating, autocast, seed_everything, select_device
from common.early_stopping import EarlyStopping
from common.ema import averaged, evaluated
from common.metrics import Tally
from common.plots import plot_train_val
from common.runs import Run
from common.schedules import schedule_from_args
from lab3_text import data
from lab3_text.model import BertClassifier, RecurrentClassifier, TransformerClassifier, resolve_bert

DEFAULT_LR = {"rnn": 1e-3, "lstm": 2e-3, "transformer": 5e-4, "bert": 5e-5}
# --pool choices of each model, its default first: a recurrent network's last state and a Transformer's mean
# as before; a first-token readout only where that token sees the whole text (a Transformer's <cls>, BERT's).
POOLS = {"rnn": ("last", "mean", "max"), "lstm": ("last", "mean", "max"), "transformer": ("mean", "max", "cls"),
         "bert": ("cls", "mean")}


def parse_args(argv=None):
    parser = cli.lab_parser("lab3_text", __doc__.splitlines()[0])
    parser.add_argument("--model", choices=["rnn", "lstm", "transformer", "bert"], default="lstm")
    parser.add_argument("--dataset", choices=["rotten-tomatoes", "imdb"], default="rotten-tomatoes")
    parser.add_argument("--train-rate", type=cli.rate, default=1.0,
                        help="seeded share of every class of the training split to train on, in (0, 1] (1)")
    parser.add_argument("--limit-train", type=cli.positive_int,
                        help="first cut the training split to N texts, class-balanced; --train-rate then takes "
                             "its share of those (quick runs)")
    parser.add_argument("--embed-dim", type=cli.positive_int, default=128)
    parser.add_argument("--hidden-size", type=cli.positive_int, default=128, help="rnn/lstm state size (128)")
    parser.add_argument("--num-layers", type=cli.positive_int, default=1, help="rnn/lstm/transformer layers (1)")
    parser.add_argument("--dropout", type=cli.probability, default=0.3)
    parser.add_argument("--bidirectional", action="store_true", help="rnn/lstm read both directions")
    parser.add_argument("--nhead", type=cli.positive_int, default=8, help="transformer attention heads (8)")
    parser.add_argument("--pool", choices=["last", "mean", "max", "cls"], default=None,
                        help="what the classifier reads: rnn/lstm last (the final state; default), mean or max of "
                             "the outputs; transformer mean (default) or max of the non-pad outputs, or cls (a "
                             "leading <cls> token); bert cls (default; its pooler) or mean of the last layer")
    parser.add_argument("--glove", action="store_true",
                        help="initialise the embeddings from GloVe 6B 50d (projected when --embed-dim is not 50)")
    parser.add_argument("--bert-model", default=None,
                        help="Hugging Face name or local folder (default: the embedded MiniLM-L6 BERT)")
    parser.add_argument("--max-vocab", type=cli.positive_int, default=20000)
    parser.add_argument("--min-freq", type=cli.positive_int, default=2)
    parser.add_argument("--max-len", type=cli.positive_int, default=256, help="tokens kept per text (256)")
    parser.add_argument("--epochs", type=cli.positive_int, default=10)
    cli.add_patience(parser, 2, "validation accuracy (ties: lower loss)", wait_alias=True)
    cli.add_checkpointing(parser, every=1)
    parser.add_argument("--lr", type=cli.positive_float, default=None,
                        help="default: rnn 1e-3, lstm 2e-3, transformer 5e-4, bert 5e-5")
    parser.add_argument("--batch-size", type=cli.positive_int, default=64)
    parser.add_argument("--clip", type=cli.positive_float, default=1.0, help="gradient-norm clipping (1)")
    cli.add_schedule_flags(parser, default=None, warmup=None)
    cli.add_label_smoothing(parser)
    cli.add_ema(parser)
    cli.add_precision(parser)
    parser.add_argument("--teacher", type=Path,
                        help="distil: a finished lab3_text run with this run's --dataset and --seed (e.g. a "
                             "fine-tuned BERT), or a sweep folder holding one; its best weights' probabilities of "
                             "the training texts join the training targets")
    parser.add_argument("--teacher-weight", type=cli.rate, default=None,
                        help="with --teacher: target = (1 - w) one-hot label + w teacher probabilities (0.5)")
    parser.add_argument("--teacher-temperature", type=cli.positive_float, default=None, metavar="T",
                        help="with --teacher: its probabilities are the softmax of its logits / T; above 1 "
                             "softer (Hinton et al. 2015) (1)")
    parser.epilog = "--lr-schedule and --warmup default to linear and 0.1 for bert, none and 0 otherwise."
    args = parser.parse_args(argv)
    args.lr = args.lr or DEFAULT_LR[args.model]
    resolve_model_defaults(args)
    for name, value in (("weight", args.teacher_weight), ("temperature", args.teacher_temperature)):
        if args.teacher is None and value is not None:
            raise cli.UsageError(f"--teacher-{name} shapes a teacher's probabilities: it needs --teacher")
    if args.teacher is not None:
        args.teacher_weight = 0.5 if args.teacher_weight is None else args.teacher_weight
        args.teacher_temperature = args.teacher_temperature or 1.0
    if args.model == "transformer" and args.embed_dim % args.nhead:
        raise cli.UsageError(f"--embed-dim {args.embed_dim} must be divisible by --nhead {args.nhead}")
    return args


def resolve_model_defaults(args) -> None:
    """Defaults that depend on --model, chosen so that a run without the flags trains as before they existed:
    bert's linear warmup and decay, a constant rate otherwise; each model's own readout."""
    bert = args.model == "bert"
    if args.lr_schedule is None:
        args.lr_schedule = "linear" if bert else "none"
    if args.warmup is None:
        args.warmup = 0.1 if bert else 0.0
    pools = POOLS[args.model]
    if args.pool is None:
        args.pool = pools[0]
    elif args.pool not in pools:
        raise cli.UsageError(f"--pool {args.pool} does not apply to --model {args.model}; it takes "
                             f"{', '.join(pools)}")


def resolve_inputs(args) -> None:
    """The files the flags name, looked up before anything is written (by main, and by a sweep for every point)."""
    if args.model == "bert":
        args.bert_model = resolve_bert(args.bert_model)
    if args.teacher is not None:
        args.teacher = find_teacher(args)


def find_teacher(args) -> Path:
    """--teacher's run folder: the folder itself, or the one finished run of a sweep folder with this run's
    --dataset and --seed. Another seed's (or dataset's) training texts hold this run's validation and test
    texts, and a teacher that learned their labels would leak them into the targets."""
    folder = args.teacher.expanduser()
    named = (folder / "config.json").exists()
    candidates = [folder] if named else [config.parent for config in sorted(folder.glob("*/config.json"))]
    if not candidates:
        raise cli.UsageError(f"--teacher {folder}: no lab3_text run there (no config.json in it or its folders)")
    configs = {}
    for run in candidates:
        try:
            configs[run] = teacher_config(run)
        except cli.UsageError:
            if named:
                raise
            # another lab's run, or a broken one, beside the teachers of a sweep folder
    same_split = [run for run, config in configs.items() if (config.dataset, config.seed) == (args.dataset, args.seed)]
    finished = [run for run in same_split if (run / "best.pt").exists()]
    if len(finished) == 1:
        return finished[0]
    if len(finished) > 1:
        raise cli.UsageError(f"--teacher {folder}: {len(finished)} finished runs there have --dataset {args.dataset} "
                             f"--seed {args.seed} ({', '.join(run.name for run in finished)}): name one")
    if same_split:
        raise cli.UsageError(f"--teacher {same_split[0]}: the run has no best.pt (not finished?)")
    raise cli.UsageError(f"--teacher {folder}: no run there has this run's --dataset {args.dataset} and --seed "
                         f"{args.seed} (another split's training texts hold this run's test texts)")


def teacher_config(run: Path) -> argparse.Namespace:
    """A run's flags from its config.json (the defaults of its model for flags newer than the run); a BERT's
    model folder resolved."""
    try:
        config = json.loads((run / "config.json").read_text())
        if not isinstance(config, dict) or config.get("model") not in DEFAULT_LR:
            raise ValueError("not a lab3_text run")
    except (OSError, ValueError) as error:
        raise cli.UsageError(f"--teacher {run}: unreadable config.json ({error})") from None
    teacher = argparse.Namespace(**{**vars(parse_args(["--model", config["model"]])), **config})
    if teacher.model == "bert":
        try:
            teacher.bert_model = resolve_bert(teacher.bert_model)
        except cli.UsageError as error:
            raise cli.UsageError(f"--teacher {run}: {error}") from None
    return teacher


def teacher_targets(args, train_split, device) -> list[list[float]]:
    """The training targets of distillation: (1 - w) one-hot label + w the teacher's probabilities, one row
    per training text. The teacher reads the texts as it was trained to: its own tokenizer, or the vocabulary
    of its own training texts (a student may train on a subset of them)."""
    teacher_args = teacher_config(args.teacher)
    teacher_args.data_root = args.data_root
    try:
        _, teacher_splits = load_splits(teacher_args)
        (_, train), pad_id, vocabulary = encode(teacher_args, (teacher_splits[0], train_split))
        teacher = build_model(teacher_args, vocabulary)[0]
        teacher.load_state_dict(torch.load(args.teacher / "best.pt", map_location="cpu", weights_only=True))
    except (OSError, RuntimeError, ValueError, TypeError, KeyError, EOFError, pickle.UnpicklingError) as error:
        detail = " ".join(str(error).split())[:300]
        raise cli.UsageError(f"--teacher {args.teacher}: its config.json and best.pt do not make a model "
                             f"({type(error).__name__}: {detail})") from None
    teacher.to(device).eval()
    sequences, labels = train
    probabilities = torch.empty(len(sequences), 2)
    # batches of this loop, not data.batches: that one gives a DDP process only its share of the rows, and
    # every process needs the target of every text
    with torch.no_grad(), autocast(device, args.precision):
        for batch in data.bucketed_batches([len(s) for s in sequences], args.batch_size, shuffle=False):
            ids, lengths = data.pad_batch([sequences[i] for i in batch], pad_id)
            logits = teacher(ids.to(device), lengths).float()
            probabilities[batch] = (logits / args.teacher_temperature).softmax(1).cpu()
    one_hot = F.one_hot(torch.tensor(labels), 2).float()
    return ((1 - args.teacher_weight) * one_hot + args.teacher_weight * probabilities).tolist()


def load_splits(args):
    """(texts, splits): the dataset's texts of --seed's split, and (train, val, test) as (texts, labels) with
    --limit-train and --train-rate's share of train."""
    texts = data.load_texts(args.dataset, Path(args.data_root), args.seed)
    picked = data.training_subset(texts.train[1], args.limit_train, args.train_rate, args.seed)
    return texts, (([texts.train[0][i] for i in picked], [texts.train[1][i] for i in picked]), texts.val, texts.test)


def encode(args, splits):
    """Id sequences of each (texts, labels) split (main: train, val, test), the padding id, and the vocabulary
    of the first split's texts (None for bert)."""
    if args.model == "bert":
        encoded, pad_id = data.encode_with_tokenizer(splits, args.bert_model, args.max_len)
        return encoded, pad_id, None
    cls_first = args.model == "transformer" and args.pool == "cls"
    encoded, vocabulary = data.encode_with_vocabulary(splits, args.max_len, args.max_vocab, args.min_freq, cls_first)
    return encoded, 0, vocabulary


def build_model(args, vocabulary):
    """The classifier, and notes on its vocabulary for summary.json."""
    if args.model == "bert":
        return BertClassifier(args.bert_model, pool=args.pool), {}
    pretrained, notes = None, {"vocab_size": len(vocabulary)}
    if args.glove:
        pretrained, found = data.glove_vectors(vocabulary, args.seed)
        notes["glove_coverage"] = found / len(vocabulary)
    if args.model == "transformer":
        return TransformerClassifier(len(vocabulary), args.embed_dim, args.nhead, args.num_layers, args.dropout,
                                     args.pool, pretrained, max_len=args.max_len), notes
    return RecurrentClassifier(args.model, len(vocabulary), args.embed_dim, args.hidden_size, args.num_layers,
                               args.dropout, args.bidirectional, pretrained, pool=args.pool), notes


def classify(model, ids, lengths, labels, precision, smoothing: float = 0.0):
    """Float32 logits of a batch (computed under the precision context) and their cross-entropy (with
    label smoothing: the training loss)."""
    with precision:
        logits = model(ids, lengths).float()
    return logits, F.cross_entropy(logits, labels, label_smoothing=smoothing)


def train_one_epoch(model, optimizer, scheduler, batches, clip: float, precision, progress, smoothing: float = 0.0,
                    ema=None) -> dict:
    """One pass over (ids, lengths, labels, n) batches: mean (smoothed) loss and accuracy. The scheduler
    steps, and the average of the weights (ema, --ema) follows, after every optimiser step."""
    model.train()
    tally = Tally()
    for ids, lengths, y, n in batches:
        logits, loss = classify(model, ids, lengths, y, precision, smoothing)
        optimizer.zero_grad(set_to_none=True)
        (loss * distributed.gradient_weight(len(y), n)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        if scheduler:
            scheduler.step()
        if ema is not None:
            ema.update_parameters(distributed.unwrapped(model))  # the same weights in every DDP process
        tally.add(loss, logits, y)
        progress.update(len(y))
    return tally.mean()


@torch.no_grad()
def evaluate(model, batches, precision) -> dict:
    """Mean loss and accuracy over (ids, lengths, labels, n) batches (every DDP process's share)."""
    model.eval()
    tally = Tally()
    for ids, lengths, y, _ in batches:
        logits, loss = classify(model, ids, lengths, y, precision)
        tally.add(loss, logits, y)
    return tally.mean()


def main(argv=None) -> dict:
    args = parse_args(argv)
    resolve_inputs(args)
    device = distributed.setup(select_device(args.device))
    seed_everything(args.seed)
    texts, splits = load_splits(args)
    distributed.check_batches(args.batch_size, len(splits[0][0]), least=1)
    try:
        (train, val, test), pad_id, vocabulary = encode(args, splits)
        with allocating(f"--embed-dim {args.embed_dim} --hidden-size {args.hidden_size} --num-layers "
                        f"{args.num_layers}"):
            model, notes = build_model(args, vocabulary)
    except OSError as error:  # a BERT name that cannot be fetched, a folder without a model
        raise cli.UsageError(f"--bert-model {args.bert_model}: {str(error).splitlines()[0]}") from None
    if args.teacher is not None:
        train = train[0], teacher_targets(args, splits[0], device)
    model = model.to(device)
    ema = averaged(model, args.ema)  # of the plain model: best.pt keeps its keys; the first step copies its weights
    net = evaluated(model, ema)  # what is validated, selected, saved as best.pt and tested
    trainer = distributed.wrap(model, device)  # DDP under torchrun; model itself in one process
    precision = autocast(device, args.precision)

    def batches(split, shuffle=False):
        return data.batches(*split, args.batch_size, pad_id, device, shuffle)
    if args.model == "bert":
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scheduler = schedule_from_args(optimizer, args, math.ceil(len(train[0]) / args.batch_size), mode="max")
    run = Run("lab3_text", args, device)

    stopper = EarlyStopping(args.patience, mode="max")
    state = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "stopper": stopper}
    if ema is not None:
        state["ema"] = ema
    first_epoch, status = run.resume(**state), "ok"
    for epoch in range(first_epoch, args.epochs + 1):
        started = time.perf_counter()
        with tqdm(total=len(train[0]), desc=f"epoch {epoch}", unit="text", disable=args.quiet, leave=False) as bar:
            train_metrics = train_one_epoch(trainer, optimizer, scheduler, batches(train, shuffle=True), args.clip,
                                            precision, bar, args.label_smoothing, ema)
        seconds = time.perf_counter() - started
        lr = optimizer.param_groups[0]["lr"]  # at the end of the epoch (a schedule changes it every step)
        val_metrics = evaluate(net, batches(val), precision)
        scheduler.epoch_end(val_metrics["acc"])  # plateau: the same accuracy in every DDP process (summed)
        run.log(epoch=epoch, show=True, train_loss=train_metrics["loss"], train_acc=train_metrics["acc"],
                val_loss=val_metrics["loss"], val_acc=val_metrics["acc"], lr=lr, seconds=seconds)
        status = distributed.main_object(stopper.update(
            net, epoch, val_metrics["acc"], losses=(train_metrics["loss"], val_metrics["loss"]),
            tiebreak=val_metrics["loss"]))
        if status != "ok":
            break
        run.checkpoint(epoch, **state)
    run.epochs_done()

    history = run.history
    title = f"{args.model} on {args.dataset}, train rate {args.train_rate:g}"
    if run.writes:
        plot_train_val(run.path("loss_curves.png"), history, "loss", "cross-entropy", title=title)
        plot_train_val(run.path("accuracy_curves.png"), history, "acc", "accuracy", title=title)
    have_best = stopper.restore_best(net, run.path("best.pt"))
    test_acc = evaluate(net, batches(test), precision)["acc"] if have_best else None
    best = stopper.best_epoch
    return run.finish(status, best_val_acc=stopper.best if have_best else None,
                      best_val_loss=history["val_loss"][best - 1] if have_best else None, best_epoch=best,
                      test_acc=test_acc, train_examples=len(train[0]),
                      seconds_per_epoch=sum(history["seconds"]) / len(history["seconds"]),
                      epochs_run=len(history["epoch"]),
                      majority_baseline=max(sum(test[1]), len(test[1]) - sum(test[1])) / len(test[1]),
                      replaced_files=texts.replaced_files, **notes)


if __name__ == "__main__":
    cli.run(main)
