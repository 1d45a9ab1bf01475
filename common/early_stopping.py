"""Best-value tracking and the report's early-stopping rule, shared by every lab."""
import math

import torch


class EarlyStopping:
    """Track the best value of a validation metric; say when to stop.

    The report's rule, with its `wait` as `patience`: training stops once the best value has not
    improved for patience + 1 consecutive epochs. patience=None never stops (the tracker still
    reports the best epoch). A value improves on the best when it beats it by more than min_delta,
    or equals it with a lower `tiebreak` (e.g. the validation loss when selecting on accuracy, which
    ties often on small validation sets). NaN never improves.
    """

    def __init__(self, patience: int | None = None, mode: str = "min", min_delta: float = 0.0):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.patience = patience
        self.sign = 1.0 if mode == "min" else -1.0
        self.min_delta = min_delta
        self.best = math.inf * self.sign
        self.best_epoch = None
        self.best_tiebreak = math.inf
        self.epochs_without_improvement = 0
        self.should_stop = False
        self.best_state = None

    def step(self, epoch: int, value: float, tiebreak: float | None = None) -> bool:
        """Record the value of one epoch; return True when it is a new best."""
        improved = self.sign * (self.best - value) > self.min_delta or (
            value == self.best and tiebreak is not None and tiebreak < self.best_tiebreak)
        if improved:
            self.best, self.best_epoch = value, epoch
            self.best_tiebreak = math.inf if tiebreak is None else tiebreak
            self.epochs_without_improvement = 0
        else:
            self.epochs_without_improvement += 1
        if self.patience is not None and self.epochs_without_improvement > self.patience:
            self.should_stop = True
        return improved

    def update(self, model, epoch: int, value: float, losses=(), tiebreak: float | None = None) -> str:
        """The end-of-epoch bookkeeping every lab shares: 'diverged' when a loss is NaN/inf,
        'early_stopped' by the rule, else 'ok'. Keeps a copy of the best epoch's weights in best_state
        (model None: the caller keeps them, and sets best_state before it is needed)."""
        if not all(math.isfinite(v) for v in (value, *losses)):
            return "diverged"
        if self.step(epoch, value, tiebreak) and model is not None:
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return "early_stopped" if self.should_stop else "ok"

    FIELDS = ("best", "best_epoch", "best_tiebreak", "epochs_without_improvement", "should_stop", "best_state")

    def state_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.FIELDS}

    def load_state_dict(self, state: dict) -> None:
        for name in self.FIELDS:
            setattr(self, name, state[name])

    def restore_best(self, model, path) -> bool:
        """Load the best epoch's weights into model and save them to path (unless None: a DDP process
        other than rank 0); False when there were none."""
        if self.best_state is None:
            return False
        model.load_state_dict(self.best_state)
        if path is not None:
            torch.save(self.best_state, path)
        return True
