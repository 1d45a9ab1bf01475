"""Running totals of a classification epoch, shared by the labs that count correct predictions."""
from common import distributed


class Tally:
    """Sums of loss x batch size and of correct top-1 predictions over an epoch. The sums stay tensors on
    the model's device (no host sync per batch) until mean()."""

    def __init__(self):
        self.loss, self.correct, self.count = 0, 0, 0

    def add(self, loss, logits, labels) -> None:
        """labels: class ids (B,), or class probabilities (B, C) (soft targets), counted by their likeliest class."""
        labels = labels.argmax(1) if labels.ndim == 2 else labels
        self.loss = self.loss + loss.detach().float() * len(labels)
        self.correct = self.correct + (logits.argmax(1) == labels).sum()
        self.count += len(labels)

    def mean(self) -> dict:
        """{"loss": mean loss, "acc": share of correct predictions}, over every DDP process's examples."""
        loss, correct, count = distributed.all_sum(self.loss, self.correct, self.count)
        return {"loss": float(loss) / count, "acc": int(correct) / count}
