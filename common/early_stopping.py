"""Best-value tracking and the report's early-stopping rule, shared by every lab."""
import math


class EarlyStopping:
    """Track the best value of a validation metric; say when to stop.

    The report's rule, with its `wait` as `patience`: training stops once the best value has not
    improved for patience + 1 consecutive epochs. patience=None never stops (the tracker still
    reports the best epoch). A value improves on the best when it beats it by more than min_delta.
    NaN never improves.
    """

    def __init__(self, patience: int | None = None, mode: str = "min", min_delta: float = 0.0):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.patience = patience
        self.sign = 1.0 if mode == "min" else -1.0
        self.min_delta = min_delta
        self.best = math.inf * self.sign
        self.best_epoch = None
        self.epochs_without_improvement = 0
        self.should_stop = False

    def step(self, epoch: int, value: float) -> bool:
        """Record the value of one epoch; return True when it is a new best."""
        improved = self.sign * (self.best - value) > self.min_delta
        if improved:
            self.best, self.best_epoch = value, epoch
            self.epochs_without_improvement = 0
        else:
            self.epochs_without_improvement += 1
        if self.patience is not None and self.epochs_without_improvement > self.patience:
            self.should_stop = True
        return improved
