"""Lab 3: real tokens/s of a training epoch of the LSTM on Rotten Tomatoes (train.py's train_one_epoch over
data.batches: length-bucketed batches, each padded to its longest text, built as the epoch goes) against
the floor: forward + loss + backward + clipping + optimiser step of the same model over such batches already
in memory; and against the report's batching, shuffled batches all padded to --max-len. The three alternate
in one process; the best of each is kept. Prints epoch/floor (goal: at least 0.9, the data path costing at
most 10%) and bucketed/fixed.

    python bench/lab3_step.py            # 1000 training texts, train.py's defaults (lstm, 128/128, batch 64), 20 rounds
    python bench/lab3_step.py --quick    # 100 texts, width 8, 2 rounds (the tests run it)
    python bench/lab3_step.py -- --glove --hidden-size 256    # any train.py flag after --

The unit is real tokens, padding excluded: every way trains on the same texts, so the same tokens, and
a token of padding is work that teaches nothing. The floor replays a pre-built epoch of bucketed batches
rather than one batch: an LSTM's cost per token depends on its batches' lengths, and the epoch's mix of
lengths is what the floor must share with it. Short epochs and many rounds, because on a shared
machine an epoch that another process slows down is common: the best of many short ones is one that ran
alone. Where other jobs share the cores, run it with OMP_NUM_THREADS=1: torch's threads wait on each
other there, and an epoch runs many times slower at random.
"""
import argparse

import torch
import torch.nn.functional as F
from timing import best_seconds
from tqdm import tqdm

from common.device import autocast, seed_everything, select_device
from lab3_text import data, train

DEFAULT = ["--limit-train", "1000"]
QUICK = ["--limit-train", "100", "--embed-dim", "8", "--hidden-size", "8", "--batch-size", "32"]


def fixed_length_batches(sequences, labels, batch_size: int, pad_id: int, max_len: int, device):
    """The report's batching, in data.batches' format: shuffled batches of any lengths, all padded to max_len."""
    order = torch.randperm(len(sequences)).tolist()
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        ids, lengths = data.pad_batch([sequences[i] for i in batch], pad_id)
        ids = F.pad(ids, (0, max_len - ids.shape[1]), value=pad_id)
        yield ids.to(device), lengths, torch.tensor([labels[i] for i in batch], device=device), len(batch)


def floor_steps(model, optimizer, batches, clip: float, precision) -> None:
    """train_one_epoch's step without its data path: batches already in memory, no tally."""
    model.train()
    for ids, lengths, y, _ in batches:
        _, loss = train.classify(model, ids, lengths, y, precision)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()


def training_texts(args):
    """train.py's training id sequences and labels, padding id and vocabulary."""
    encoded, pad_id, vocabulary = train.encode(args, train.load_splits(args)[1])
    return encoded[0], pad_id, vocabulary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small subset and a tiny model")
    parser.add_argument("--rounds", type=int, help="alternate the three this many times; keep the best (20, quick 2)")
    parser.add_argument("train_flags", nargs="*", help="lab3_text/train.py flags (after --)")
    bench = parser.parse_args(argv)
    bench.rounds = bench.rounds or (2 if bench.quick else 20)
    args = train.parse_args([*(QUICK if bench.quick else DEFAULT), *bench.train_flags])
    train.resolve_inputs(args)
    device = select_device(args.device)
    seed_everything(args.seed)
    (sequences, labels), pad_id, vocabulary = training_texts(args)
    model, _ = train.build_model(args, vocabulary)
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    precision = autocast(device, args.precision)
    in_memory = list(data.batches(sequences, labels, args.batch_size, pad_id, device, shuffle=True))

    def epoch(batches):
        with tqdm(disable=True) as progress:  # train.py --quiet
            train.train_one_epoch(model, optimizer, None, batches, args.clip, precision, progress)

    ways = {
        "bucketed": lambda: epoch(data.batches(sequences, labels, args.batch_size, pad_id, device, shuffle=True)),
        "floor": lambda: floor_steps(model, optimizer, in_memory, args.clip, precision),
        "fixed": lambda: epoch(fixed_length_batches(sequences, labels, args.batch_size, pad_id, args.max_len, device)),
    }
    tokens = sum(map(len, sequences))
    rate = {name: tokens / time_ for name, time_ in best_seconds(ways, bench.rounds, device).items()}
    print(f"lab3 epoch against floor: {args.model} on {args.dataset}, {len(sequences)} training texts, {tokens} real "
          f"tokens an epoch, embed {args.embed_dim}, hidden {args.hidden_size}, {args.num_layers} layer(s), batch "
          f"{args.batch_size}, Adam + clip {args.clip:g}, {device.type} "
          f"{'bf16 autocast' if isinstance(precision, torch.autocast) else 'no autocast'}, "
          f"{torch.get_num_threads()} CPU thread(s), best of {bench.rounds} rounds; real tokens/s, padding excluded")
    print(f"bucketed epoch {rate['bucketed']:9.0f} tokens/s  (train_one_epoch over data.batches)")
    print(f"floor          {rate['floor']:9.0f} tokens/s  (the same kind of batches in memory: forward + loss + "
          f"backward + clip + step)")
    print(f"fixed padding  {rate['fixed']:9.0f} tokens/s  (train_one_epoch over shuffled batches padded to "
          f"--max-len {args.max_len})")
    print(f"epoch/floor {rate['bucketed'] / rate['floor']:.3f}  (goal: at least 0.9)   "
          f"bucketed/fixed {rate['bucketed'] / rate['fixed']:.3f}")


if __name__ == "__main__":
    main()
