"""Lab 1 runs trained together as one batched ensemble: networks of one activation and hidden-layer kind,
their weights stacked, one batched matmul per layer for all the networks that have that layer. Each
network computes what train.py computes for it alone (same initial weights and data order, its own early
stopping) and writes the run folder train.py would write. The sweep runner trains a grid this way when
the lab allows it; `train.py --seeds K` trains K seeds.

Where a step's cost is per-step overhead on tiny matrices (narrow networks), E networks in one step cost
little more than one; where it is the matmuls themselves (wide ones), batching saves the overhead only, and
padding a narrow network to a wide one's width would waste more than it saves (see NARROW).
"""
import argparse

import torch
import torch.nn.functional as F
from torch import nn

from common import checkpoint
from common.device import seed_everything, select_device
from common.early_stopping import EarlyStopping
from common.runs import Run
from common.schedules import schedule_from_args
from lab1_fnn import train

MAY_DIFFER = {"width", "depth", "seed", "out", "quiet"}  # flags that networks trained together may differ in
# Up to about this width a step on lab 1's data costs its overhead, not its matmuls (2 cores: 5 networks of
# widths 5-25 train 5.7x faster together; 5 of width 75, 1.1-1.7x; widths 5-75 padded to 75, 0.94x): narrow
# networks train together whatever their widths, wider ones only with networks of their own width.
NARROW = 32


def batch_key(args: argparse.Namespace):
    """Runs with equal keys can train together; None: this one trains alone (L-BFGS's line search is one for
    all parameters; a resumed run continues its own last.pt; --lr-schedule plateau follows its own validation
    MSE, while the networks of an ensemble share one optimiser and so one rate). The other schedules are a
    function of the step alone, the same for every network of a key (equal --epochs, --batch-size, data)."""
    if args.optimizer == "lbfgs" or args.resume or args.lr_schedule == "plateau":
        return None
    width_class = 0 if args.width <= NARROW else args.width
    return width_class, tuple(sorted((key, repr(value)) for key, value in vars(args).items() if key not in MAY_DIFFER))


def _padded(tensors: list[torch.Tensor], rows: int, columns: int) -> torch.Tensor:
    """Stack 2-d tensors, each zero-padded at the bottom and right to rows x columns."""
    return torch.stack([F.pad(t, (0, columns - t.shape[1], 0, rows - t.shape[0])) for t in tensors])


class Ensemble(nn.Module):
    """E FunctionNets of one activation and hidden-layer kind, in order of decreasing depth; widths zero-padded
    to the widest, W. Shapes:

        x (N, 1), or (E, N, 1) one batch per network  ->  h (E, N, W)  ->  ...  ->  y (E, N, 1)
        input (E, 1, W) · hidden layer i (E_i, W, W) · output (E, W, 1) · biases (E, 1, W) and (E, 1, 1)

    E_i networks have a hidden layer i; they come first, so layer i is one batched matmul on h[:E_i], and the
    networks h[E_i:] that end before it take the output layer there (the deep ones pay no padding for the
    shallow ones, and each layer costs one matmul for all the networks that have it):

        depths 3 3 2 1:  x -> input -> h[0:4];  h[3:4] -> output                (network 3)
                         h[0:3] -> hidden 0 -> h[0:3];  h[2:3] -> output  (network 2)
                         h[0:2] -> hidden 1 -> h[0:2]   -> output         (networks 0 and 1)

    A padded unit's weights in and bias are 0, so it outputs activation(0): 0 for relu, tanh and gelu. Where
    that is not 0 (sigmoid) and the widths differ, mask (E, 1, W) zeroes the padded units after every
    activation. Either way they output nothing, so the weights into and out of them get zero gradients and
    never change (SGD and Adam alike), and each network computes exactly its own function.
    """

    def __init__(self, nets: list[train.FunctionNet]):
        super().__init__()
        self.widths = [net.input.out_features for net in nets]
        self.depths = [len(net.hidden) + net.frozen_hidden_uses for net in nets]  # hidden layers of each
        if self.depths != sorted(self.depths, reverse=True):
            raise ValueError("an Ensemble takes its networks in order of decreasing depth")
        self.active = [sum(depth > i for depth in self.depths) for i in range(self.depths[0])]  # E_i
        width = max(self.widths)
        self.activation = nets[0].activation
        padded = len(set(self.widths)) > 1 and self.activation(torch.zeros(())).item() != 0
        self.register_buffer("mask", (torch.arange(width) < torch.tensor(self.widths)[:, None]).float()[:, None]
                             if padded else None)
        self.w_in = nn.Parameter(_padded([net.input.weight.detach().T for net in nets], 1, width))
        self.b_in = nn.Parameter(_padded([net.input.bias.detach()[None] for net in nets], 1, width))
        self.frozen = nets[0].frozen_hidden_uses > 0  # the deepest: a report network deeper than 1 has one
        trained = [] if self.frozen else list(enumerate(self.active))  # (layer i, E_i) of trained hidden layers
        self.w_hidden = nn.ParameterList(_padded([net.hidden[i].weight.detach().T for net in nets[:k]], width, width)
                                         for i, k in trained)
        self.b_hidden = nn.ParameterList(_padded([net.hidden[i].bias.detach()[None] for net in nets[:k]], 1, width)
                                         for i, k in trained)
        if self.frozen:  # --hidden-layers report: each network's one shared untrained layer, at every position
            deep = nets[:self.active[0]]
            self.register_buffer("w_frozen", _padded([net.frozen_weight.T for net in deep], width, width))
            self.register_buffer("b_frozen", _padded([net.frozen_bias[None] for net in deep], 1, width))
        self.w_out = nn.Parameter(_padded([net.output.weight.detach().T for net in nets], width, 1))
        self.b_out = nn.Parameter(torch.stack([net.output.bias.detach()[None] for net in nets]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.expand(len(self.widths), -1, -1)
        h = self._activate(torch.baddbmm(self.b_in, x, self.w_in))
        outputs = []  # of the networks that end, shallowest first
        for i, k in enumerate(self.active):
            if k < len(h):
                h, ending = h.split([k, len(h) - k])
                outputs.append(self._output(ending, k))
            weight, bias = (self.w_frozen[:k], self.b_frozen[:k]) if self.frozen else \
                (self.w_hidden[i], self.b_hidden[i])
            h = self._activate(torch.baddbmm(bias, h, weight))
        outputs.append(self._output(h, 0))
        return torch.cat(outputs[::-1]) if len(outputs) > 1 else outputs[0]

    def _activate(self, z: torch.Tensor) -> torch.Tensor:
        """The activation of the first len(z) networks, padded units zeroed where they would not be 0."""
        return self.activation(z) if self.mask is None else self.activation(z) * self.mask[:len(z)]

    def _output(self, h: torch.Tensor, first: int) -> torch.Tensor:
        """The output layer of networks first .. first + len(h) - 1."""
        last = first + len(h)
        return torch.baddbmm(self.b_out[first:last], h, self.w_out[first:last])

    def member_state(self, e: int, like: dict | None = None) -> dict:
        """Network e's weights as the state dict of its own FunctionNet (views, not copies), in its order.
        like: tensors keyed by this module's parameters (an optimiser's moments): their part for network e,
        under the same names (0-d tensors, such as Adam's step, as they are)."""
        w = self.widths[e]
        pieces = [("input.weight", self.w_in, lambda t: t[e, :, :w].T),
                  ("input.bias", self.b_in, lambda t: t[e, 0, :w])]
        for i in range(0 if self.frozen else self.depths[e]):
            pieces += [(f"hidden.{i}.weight", self.w_hidden[i], lambda t: t[e, :w, :w].T),
                       (f"hidden.{i}.bias", self.b_hidden[i], lambda t: t[e, 0, :w])]
        if self.frozen and self.depths[e]:
            pieces += [("frozen_weight", self.w_frozen, lambda t: t[e, :w, :w].T),
                       ("frozen_bias", self.b_frozen, lambda t: t[e, 0, :w])]
        pieces += [("output.weight", self.w_out, lambda t: t[e, :w].T), ("output.bias", self.b_out, lambda t: t[e, 0])]
        if like is None:
            return {name: cut(tensor) for name, tensor, cut in pieces}
        return {name: cut(like[tensor]) if like[tensor].dim() else like[tensor]
                for name, tensor, cut in pieces if tensor in like}


class Member:
    """Network e of an ensemble, as last.pt sees a model: its state dict."""

    def __init__(self, ensemble: Ensemble, e: int):
        self.ensemble, self.e = ensemble, e

    def state_dict(self) -> dict:
        return self.ensemble.member_state(self.e)


class BestWeights:
    """Every network's best-validation weights in one stacked copy of the ensemble's parameters, updated
    with one torch.where per parameter for the networks that improved (one EarlyStopping copy per network
    and parameter cost more than the training step of a small network)."""

    def __init__(self, ensemble: Ensemble):
        self.ensemble = ensemble
        self.copies = {param: param.detach().clone() for param in ensemble.parameters()}

    @torch.no_grad()
    def update(self, improved: list[int]) -> None:
        if improved:
            mask = torch.zeros(len(self.ensemble.widths), 1, 1, dtype=torch.bool, device=self.ensemble.w_in.device)
            mask[improved] = True
            for param, copy in self.copies.items():
                torch.where(mask[:len(param)], param, copy, out=copy)

    def of(self, e: int) -> dict:
        """Network e's best weights, as its own FunctionNet's state dict (copies)."""
        buffers = {buffer: buffer for buffer in self.ensemble.buffers()}  # the report's frozen layer
        return {name: t.clone() for name, t in self.ensemble.member_state(e, like={**self.copies, **buffers}).items()}


class MemberOptimizer:
    """The state dict that train.py's optimiser would hold for network e alone, so that its last.pt
    resumes with train.py --resume (one run at a time: the same numbers)."""

    def __init__(self, ensemble: Ensemble, optimizer: torch.optim.Optimizer, e: int):
        self.ensemble, self.optimizer, self.e = ensemble, optimizer, e

    def state_dict(self) -> dict:
        names = [name for name in self.ensemble.member_state(self.e) if not name.startswith("frozen")]
        keys = {key for state in self.optimizer.state.values() for key in state}  # Adam: step, exp_avg, ...
        parts = {key: self.ensemble.member_state(self.e, like={param: state[key] for param, state in
                                                               self.optimizer.state.items()}) for key in keys}
        group = {key: value for key, value in self.optimizer.param_groups[0].items() if key != "params"}
        return {"state": {i: {key: parts[key][name].clone() for key in keys} for i, name in enumerate(names)} if keys
                else {}, "param_groups": [{**group, "params": list(range(len(names)))}]}


class MemberRandom:
    """The random streams as train.py would have them for network e: its data order is its own generator's."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator

    def state_dict(self) -> dict:
        return {**checkpoint.rng_state(), "torch": self.generator.get_state()}


def mse_per_network(prediction: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(E,) mean squared errors; y (N, 1) shared, or (E, N, 1)."""
    return (prediction - y).pow(2).mean(dim=(1, 2))


def train_one_epoch(ensemble, optimizer, scheduler, x, y, batch_size: int, generators) -> tuple[torch.Tensor, float]:
    """One pass of every network over the training set, in the order train.py would draw for it (its own
    generator, in the state the global one has after its initialisation): (E,) mean training MSEs, and the
    rate of the pass's last step, the same for all (the scheduler steps after every optimiser step)."""
    n = len(x)
    if train.steps_per_epoch(n, batch_size) == 1:
        order = [slice(None)]
    else:
        order = torch.stack([torch.randperm(n, generator=g) for g in generators]).to(x.device).split(batch_size, 1)
    total = torch.zeros(len(generators), device=x.device)
    for idx in order:
        xb, yb = (x, y) if isinstance(idx, slice) else (x[idx], y[idx])  # (E, B, 1) gathered per network
        losses = mse_per_network(ensemble(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # each network's gradient is that of its own loss
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
        total += losses.detach() * (n if isinstance(idx, slice) else idx.shape[1])
    return total / n, lr


@torch.no_grad()
def evaluate(ensemble, x, y) -> torch.Tensor:
    return mse_per_network(ensemble(x), y)


def train_together(argvs: list[list[str]]) -> list[dict]:
    """Train the runs of these argument lists as one ensemble (their batch_key must be equal); return
    their summaries, in order."""
    runs_args = [train.parse_args(argv) for argv in argvs]
    if len({batch_key(args) for args in runs_args}) != 1 or batch_key(runs_args[0]) is None:
        raise ValueError("train_together needs runs of one batch_key")
    deepest_first = sorted(range(len(argvs)), key=lambda i: -runs_args[i].depth)  # the Ensemble's order
    summaries = _train_ensemble([runs_args[i] for i in deepest_first])
    return [summary for _, summary in sorted(zip(deepest_first, summaries, strict=True), key=lambda pair: pair[0])]


def _train_ensemble(runs_args: list[argparse.Namespace]) -> list[dict]:
    args = runs_args[0]
    device = select_device(args.device)
    data = train.make_data(args.function, args.n_points, args.split, args.data_seed)
    (x_train, y_train), (x_val, y_val) = (tuple(t.to(device) for t in data[name]) for name in ("train", "val"))
    nets, generators = [], []
    for run_args in runs_args:  # each network's initial weights and data order, as train.py would draw them
        seed_everything(run_args.seed)
        nets.append(train.FunctionNet(run_args.width, run_args.depth, args.activation, args.hidden_layers))
        generators.append(torch.Generator().set_state(torch.get_rng_state()))
    ensemble = Ensemble(nets).to(device)
    optimizer = train.make_optimizer(args.optimizer, ensemble.parameters(), args.lr)
    # One schedule for all (batch_key: not plateau, so epoch_end would do nothing), in the state each network's
    # own scheduler would be in: its state dict is every network's in last.pt. Networks whose runs have ended
    # train on unseen with the others, so the step count, and the rate, stay those of every running network.
    scheduler = schedule_from_args(optimizer, args, train.steps_per_epoch(len(x_train), args.batch_size))
    for run_args in runs_args:
        run_args.ensemble = len(runs_args)  # recorded in config.json: trained together with ensemble - 1 others
    # Each run's last.pt is in train.py's format: an interrupted point resumes alone, with train.py --resume.
    # Ctrl-C stops at once (one handler could not defer for every run), from the last checkpoint.
    runs = [Run("lab1_fnn", run_args, device, defer_interrupts=False) for run_args in runs_args]
    stoppers = [EarlyStopping(run_args.patience) for run_args in runs_args]
    best = BestWeights(ensemble)
    ended = {}  # network -> (status, final training MSE, a copy of its final weights)

    for epoch in range(1, args.epochs + 1):
        train_mse, lr = train_one_epoch(ensemble, optimizer, scheduler, x_train, y_train, args.batch_size, generators)
        train_mse = train_mse.tolist()
        val_mse = evaluate(ensemble, x_val, y_val).tolist()
        ending_train_mse = None  # every network's, computed once in an epoch where some run ends
        statuses = {}
        for e in range(len(runs)):
            if e in ended:
                continue  # it trains on with the others, unseen: its numbers ended with its run
            runs[e].log(epoch=epoch, train_mse=train_mse[e], val_mse=val_mse[e], lr=lr)
            statuses[e] = stoppers[e].update(None, epoch, val_mse[e], losses=(train_mse[e],))
        best.update([e for e in statuses if stoppers[e].best_epoch == epoch])
        for e, status in statuses.items():
            if status != "ok" or epoch == args.epochs or epoch % runs[e].checkpoint_every == 0:
                stoppers[e].best_state = best.of(e) if stoppers[e].best_epoch else None
            if status != "ok" or epoch == args.epochs:
                if ending_train_mse is None:
                    ending_train_mse = evaluate(ensemble, x_train, y_train).tolist()
                weights = {key: value.detach().clone() for key, value in ensemble.member_state(e).items()}
                ended[e] = (status, ending_train_mse[e], weights)
            else:
                runs[e].checkpoint(epoch, model=Member(ensemble, e), optimizer=MemberOptimizer(ensemble, optimizer, e),
                                   scheduler=scheduler, stopper=stoppers[e], rng=MemberRandom(generators[e]))
        if len(ended) == len(runs):
            break

    summaries = []
    for e, run_args in enumerate(runs_args):
        status, final_train_mse, weights = ended[e]
        model = train.FunctionNet(run_args.width, run_args.depth, args.activation, args.hidden_layers).to(device)
        model.load_state_dict(weights)
        summaries.append(train.finish(runs[e], run_args, model, stoppers[e], status, final_train_mse, data, device))
    return summaries
