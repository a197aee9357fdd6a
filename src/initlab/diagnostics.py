"""Per-layer diagnostics: what the tutorial's arguments predict, measured during training.

``LayerDiagnostics`` is a Lightning callback in the spirit of fastai's ActivationStats and mup's
coord_check: forward hooks on each hidden activation record, every ``every_n_steps`` steps, the
activation statistics, dead units, weight and gradient norms and the relative update size, and a
tensor hook on each hidden Linear's output records the back-propagated gradient dL/dh_l: Glorot &
Bengio (2010) saw vanishing in that gradient (their Fig. 7), not in the weight gradients, which
stay flat across depth (their Fig. 8). Hooks are attached only for the steps that are measured, so
the other steps pay nothing.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor, nn

from initlab.config import DiagnosticsConf
from initlab.dashboard import jacobian_tag, layer_tag
from initlab.data import steps_of
from initlab.mlp import residual_blocks
from initlab.propagation.spectrum import (
    activation_derivative,
    hidden_stack,
    jacobian,
    singular_values,
    spectrum_stats,
)
from initlab.schedule import Schedule

log = logging.getLogger(__name__)


@torch.no_grad()
def distinct_units(layer: nn.Linear, dead: Tensor | None = None, atol: float = 1e-6) -> int:
    """How many different units a layer has: rows of [W | b] equal within ``atol`` (max abs
    difference) count once, and so do all dead units (``dead``: a bool mask of units that output
    0 for every input).

    Zero or constant init gives 1 (the tutorial's symmetry problem); a random init gives the width.
    """
    rows = layer.weight
    if layer.bias is not None:
        rows = torch.cat([rows, layer.bias[:, None]], dim=1)
    rows = rows.double()
    alive = torch.ones(len(rows), dtype=torch.bool) if dead is None else ~dead.cpu()
    n_dead = len(rows) - int(alive.sum())
    rows = rows[alive.to(rows.device)]
    # Euclidean distances by one matrix product (fast). max-abs <= L2 <= sqrt(dim) * max-abs:
    # an earlier row within L2 atol is surely equal; one within sqrt(dim) * atol may be.
    dist = torch.cdist(rows, rows)
    earlier = torch.ones_like(dist, dtype=torch.bool).tril(diagonal=-1)
    duplicate = ((dist <= atol) & earlier).any(dim=1)
    maybe = (dist <= atol * math.sqrt(rows.shape[1])) & earlier & ~duplicate[:, None]
    for i, j in maybe.nonzero().tolist():
        if not duplicate[i] and (rows[i] - rows[j]).abs().max() <= atol:
            duplicate[i] = True
    return int((~duplicate).sum()) + (1 if n_dead else 0)


def hidden_layers(net: nn.Module) -> list[tuple[str, nn.Linear, nn.Module]]:
    """(name, Linear, activation module) for each hidden layer of an initlab MLP (fc{i}/act{i});
    for a residual net, each Linear whose output reaches an activation (``residual_layers``)."""
    if residual_blocks(net):
        return residual_layers(net)
    children = dict(net.named_children())
    return [
        (name, layer, children[f"act{name[2:]}"])
        for name, layer in children.items()
        if name.startswith("fc") and f"act{name[2:]}" in children
    ]


def residual_layers(net: nn.Module) -> list[tuple[str, nn.Linear, nn.Module]]:
    """(name, Linear, activation module) of a residual net (``initlab.mlp``), each Linear with the
    activation its output reaches next: ``inp`` with block 1's ``act1``; a block's ``fc{i}`` with
    its ``act{i+1}``; its last ``fc{m}`` with the next block's ``act1`` (the final ``act`` after
    the last block). An activation's input is then the stream where a branch starts (normalized,
    with a norm): ``preact_q`` of ``block{l}.fc{m}`` is the second moment of block l's output."""
    acts = [(n, m) for n, m in net.named_modules() if n.split(".")[-1].startswith("act")]
    linears = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Linear) and n != "out"]
    return [(n, lin, act) for (n, lin), (_, act) in zip(linears, acts, strict=True)]


def _weight_grad_norm(layer: nn.Module) -> Tensor | None:
    """Gradient norm of a layer's weight parameters (W, or g and v under weight norm)."""
    sq = [
        p.grad.detach().pow(2).sum()
        for name, p in layer.named_parameters()
        if p.grad is not None and not name.endswith("bias")
    ]
    return torch.stack(sq).sum().sqrt() if sq else None


def _as_floats(metrics: dict[str, Any]) -> dict[str, float]:
    """Tensor values read from the device in one transfer, not one sync per metric."""
    tensors = {k: v for k, v in metrics.items() if isinstance(v, Tensor)}
    out = {k: float(v) for k, v in metrics.items() if k not in tensors}
    if tensors:
        values = torch.stack([v.detach().float().reshape(()) for v in tensors.values()])
        out.update(zip(tensors, values.tolist(), strict=True))
    return out


def add_histogram(writer: Any, tag: str, values: Tensor, step: int, bins: int = 64) -> None:
    """A TensorBoard histogram of ``values`` in ``bins`` equal bins, binned by torch on the
    values' device (SummaryWriter.add_histogram bins in numpy on the host); non-finite values
    are left out."""
    v = values.detach().flatten().float()
    v = v[torch.isfinite(v)]
    if not len(v):
        return
    lo, hi = torch.aminmax(v)
    lo_f, hi_f, total, squares = torch.stack([lo, hi, v.sum(), v.dot(v)]).tolist()
    if hi_f > lo_f:
        counts = torch.histc(v, bins, min=lo_f, max=hi_f)
        limits = torch.linspace(lo_f, hi_f, bins + 1)[1:]
    else:  # all values equal (a zero init): one bucket
        counts, limits = torch.tensor([float(len(v))]), torch.tensor([hi_f])
    writer.add_histogram_raw(
        tag, lo_f, hi_f, len(v), total, squares, limits.cpu(), counts.cpu(), global_step=step
    )


class LayerDiagnostics(Callback):
    """Per-layer statistics logged as TensorBoard scalars, ``watch/<quantity>/<layer>``.

    Every ``every_n_steps`` steps: for each hidden layer the activation mean and std, the
    pre-activation second moment q, the dead-unit fraction (units whose output is 0 for every input
    of the batch), the back-propagated gradient's second moment ``grad_preact_q`` = E[(B dL/dh_l)^2]
    at the Linear's output (per example: B times the batch-mean loss's gradient, as
    ``scripts/propagate.py``'s ``grad_q``) and its ratio to the last hidden layer's
    (``grad_preact_ratio``: below 1 toward the input when the gradient vanishes), and for every
    Linear the weight norm, gradient norm and update-to-weight ratio ||dW|| / ||W|| (and each
    residual block's gate; a residual net's hidden layers: ``residual_layers``). ``profile``
    keeps the per-layer q and grad_preact_q of step 0 and of the last measured step (what
    results.json records as ``layer_profile``). At step 0 and at each epoch's (and the budget's)
    last step: the number of distinct units per hidden layer (1 means the layer is symmetric:
    zero or constant init) and, if ``histograms``, histograms of weights, pre-activations and
    gradients (also every ``histogram_every_n_steps``); and, on the first ``jacobian_inputs``
    inputs of the step's batch, the spectrum of the hidden stack's Jacobian dh_L/dh_1
    (``initlab.propagation.spectrum``): ``watch/jacobian/m1``, ``.../spread``, ``.../s_max``
    (means over the inputs) and the histogram ``watch/jacobian/singular_values``; step 0's means are
    kept in ``jacobian`` (results.json's). Only there, not every ``every_n_steps``: an SVD-sized
    eigenproblem per input. A net it does not support (norm layers, a residual net, one hidden
    layer, widths above ``spectrum.MAX_WIDTH``) is skipped, with one line in train.log.

    A training batch may be a block of several optimizer steps, so the callback follows steps,
    not batches: a measured step's forward is hooked from the end of the step before (or the
    block's start), its gradients are read in ``on_before_optimizer_step``, and its update is
    measured at the next step's ``on_before_backward`` (or the block's end).
    """

    def __init__(
        self,
        every_n_steps: int = DiagnosticsConf.every_n_steps,
        histograms: bool = DiagnosticsConf.histograms,
        histogram_every_n_steps: int | None = DiagnosticsConf.histogram_every_n_steps,
        symmetry: bool = DiagnosticsConf.symmetry,
        schedule: Schedule | None = None,
        jacobian_inputs: int = DiagnosticsConf.jacobian_inputs,
    ) -> None:
        self.every_n_steps = every_n_steps
        self.jacobian_inputs = jacobian_inputs
        self._jacobian_skipped = False  # a net the spectrum does not support (said once)
        self._q0: Tensor | None = None  # E[x^2] of the step's batch, for the prediction
        self.jacobian: dict[str, Any] | None = None  # step 0's spectrum (results.json)
        self.histograms = histograms
        self.histogram_every_n_steps = histogram_every_n_steps
        self.symmetry = symmetry
        self._hooks: list[Any] = []
        self._captured: dict[str, tuple[Tensor, Tensor]] = {}
        self._plan: dict[str, bool] = {}
        self._step = 0  # the step the plan is for
        self._block_end = 0  # global step after this block's last step
        self.schedule = schedule  # where epochs and the budget end (the boundary steps)
        self._pending: dict[str, Any] | None = None  # a measured step waiting for its update
        self._grads: dict[str, Tensor] = {}  # E[(B dL/dh)^2] of each hidden Linear, this step
        self.profile: dict[str, dict[str, Any]] = {}  # "first" / "last": a step's layer profile

    # -- which steps ----------------------------------------------------------------------
    def plan(self, step: int, epoch_end: bool) -> dict[str, bool]:
        """What to measure at global step ``step`` (``epoch_end``: the epoch's last step)."""
        boundary = step == 0 or epoch_end
        hist_every = self.histogram_every_n_steps
        return {
            "stats": step % self.every_n_steps == 0 or boundary,
            "symmetry": self.symmetry and boundary,
            "histograms": self.histograms
            and (boundary or bool(hist_every and step % hist_every == 0)),
            "jacobian": boundary and self.jacobian_inputs > 0 and not self._jacobian_skipped,
        }

    def _ends_epoch(self, step: int) -> bool:
        """Whether the step taken at global step ``step`` ends an epoch or the budget."""
        s, done = self.schedule, step + 1
        return s is not None and (s.epoch_end(done) == done or done == s.total_steps)

    def _arm(self, net: nn.Module, step: int) -> None:
        """Plan ``step`` and, when it is measured, hook its forward pass."""
        self._step = step
        self._plan = self.plan(step, self._ends_epoch(step))
        if any(self._plan.values()):
            for name, layer, act in hidden_layers(net):
                self._hooks.append(act.register_forward_hook(self._capture(name)))
                if self._plan["stats"]:
                    self._hooks.append(layer.register_forward_hook(self._watch_grad(name)))
            if self._plan["jacobian"] and (first := getattr(net, "fc1", None)) is not None:
                self._hooks.append(first.register_forward_hook(self._watch_input))

    def _unhook(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()

    def _capture(self, name: str):
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            self._captured[name] = (inputs[0].detach(), output.detach())

        return hook

    def _watch_input(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        self._q0 = inputs[0].detach().pow(2).mean()

    def _watch_grad(self, name: str):
        """A forward hook that asks the Linear's output for its gradient in the backward pass."""

        def keep(grad: Tensor) -> None:
            self._grads[name] = grad.detach().pow(2).mean() * grad.shape[0] ** 2

        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            if output.requires_grad:
                output.register_hook(keep)

        return hook

    # -- the hooks of one step ------------------------------------------------------------
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._block_end = trainer.global_step + len(steps_of(batch))
        self._arm(pl_module.net, trainer.global_step)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self._unhook()  # this step's forward and backward are done
        captured, self._captured = self._captured, {}
        grads, self._grads = self._grads, {}
        plan = self._plan
        if any(plan.values()):
            self._pending = self._measure_before_update(pl_module.net, plan, captured, grads)
        if self._step + 1 < self._block_end:
            self._arm(pl_module.net, self._step + 1)
        else:
            self._plan = {}

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self._finish(trainer, pl_module.net)  # the previous step's update is done

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._unhook()  # a block cut short leaves a step armed
        self._captured.clear()
        self._grads.clear()
        self._plan = {}
        self._finish(trainer, pl_module.net)

    # -- measuring ------------------------------------------------------------------------
    def _measure_before_update(
        self,
        net: nn.Module,
        plan: dict[str, bool],
        captured: dict[str, tuple[Tensor, Tensor]],
        grads: dict[str, Tensor],
    ) -> dict[str, Any]:
        """What a step shows before its update: activations, gradients, the weights."""
        metrics: dict[str, Any] = {}
        if plan["stats"]:
            metrics.update({layer_tag("grad_preact_q", name): q for name, q in grads.items()})
        dead_masks: dict[str, Tensor] = {}
        for name, (pre, post) in captured.items():
            dead = (post == 0).all(dim=0)
            dead_masks[name] = dead
            if plan["stats"]:
                metrics[layer_tag("act_mean", name)] = post.mean()
                metrics[layer_tag("act_std", name)] = post.std()
                metrics[layer_tag("preact_q", name)] = pre.pow(2).mean()
                metrics[layer_tag("dead_fraction", name)] = dead.float().mean()
        spectrum = self._spectrum(net, captured) if plan["jacobian"] else None
        if spectrum is not None:
            stats = spectrum_stats(spectrum)
            metrics.update({jacobian_tag(k): stats[k].mean() for k in JACOBIAN_SCALARS})
        before: dict[str, Tensor] = {}
        grads: dict[str, Tensor] = {}
        for name, layer in _linears(net):
            if plan["stats"] and (norm := _weight_grad_norm(layer)) is not None:
                metrics[layer_tag("grad_norm", name)] = norm
            before[name] = layer.weight.detach().clone()
            leaf = _weight_leaf(layer)  # under weight norm, W is computed: use v's gradient
            if plan["histograms"] and leaf.grad is not None:
                grads[name] = leaf.grad.detach().clone()
        preacts = {name: pre for name, (pre, _) in captured.items()}
        return {
            "step": self._step,
            "plan": plan,
            "metrics": metrics,
            "dead": dead_masks,
            "before": before,
            "grads": grads,
            "preacts": preacts,
            "spectrum": spectrum,
            "q0": self._q0 if spectrum is not None else None,
        }

    def _spectrum(
        self, net: nn.Module, captured: dict[str, tuple[Tensor, Tensor]]
    ) -> Tensor | None:
        """The singular values of dh_L/dh_1 for the first ``jacobian_inputs`` inputs of the
        step, from the captured pre-activations (the Gram matrix's eigenvalues,
        ``spectrum.singular_values(exact=False)``: a fraction of an SVD's cost); None for a net
        the measurement does not support, said once in train.log."""
        try:
            fcs, acts = hidden_stack(net)
        except ValueError as exc:
            self._jacobian_skipped = True
            log.info("diagnostics: no Jacobian spectrum: %s", exc)
            return None
        n = self.jacobian_inputs
        derivs = [
            activation_derivative(act, captured[f"fc{i}"][0][:n])
            for i, act in enumerate(acts[:-1], start=1)
        ]
        return singular_values(jacobian([fc.weight for fc in fcs[1:]], derivs), exact=False)

    def _finish(self, trainer: L.Trainer, net: nn.Module) -> None:
        """Measure the pending step's update and log everything at that step."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        plan, metrics, step = pending["plan"], pending["metrics"], pending["step"]
        if plan["stats"]:
            for name, layer in _linears(net):
                w = layer.weight.detach()
                metrics[layer_tag("weight_norm", name)] = w.norm()
                before = pending["before"][name]
                if before.norm() > 0:
                    metrics[layer_tag("update_ratio", name)] = (w - before).norm() / before.norm()
            for name, block in residual_blocks(net):  # SkipInit's open from 0, Fixup's from 1
                metrics[layer_tag("gate", name)] = block.gate.detach()
        if plan["symmetry"]:
            for name, layer, _ in hidden_layers(net):
                metrics[layer_tag("distinct_units", name)] = distinct_units(
                    layer, pending["dead"].get(name)
                )
        metrics = _as_floats(metrics)
        if plan["stats"]:
            metrics.update(_gradient_ratios(net, metrics))
            self._keep_profile(net, step, metrics)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
        if plan["histograms"]:
            self._log_histograms(trainer, pending)
        if (spectrum := pending.get("spectrum")) is not None:
            self._log_spectrum(trainer, step, spectrum, pending["q0"])

    def _log_spectrum(self, trainer: L.Trainer, step: int, s: Tensor, q0: Tensor | None) -> None:
        """The histogram of the singular values (TensorBoard), and step 0's means over the
        inputs (``jacobian``: m1, var, spread, s_max; null where not finite, a zero init)."""
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                add_histogram(logger.experiment, jacobian_tag("singular_values"), s, step)
        if step == 0:
            stats = spectrum_stats(s)
            keys = ("m1", "var", "spread", "s_max")
            values = torch.stack([stats[k].mean() for k in keys]).tolist()
            self.jacobian = {
                "step": step,
                "inputs": int(s.shape[0]),
                "q0": None if q0 is None else float(q0),
                **{k: v if math.isfinite(v) else None for k, v in zip(keys, values, strict=True)},
            }

    def _keep_profile(self, net: nn.Module, step: int, metrics: dict[str, float]) -> None:
        """Keep this step's per-layer q and grad_preact_q: the first measured step (0) and the
        latest one (at the end of training: the run's last step, an epoch end)."""
        names = [name for name, _, _ in hidden_layers(net)]
        profile = {
            "step": step,
            "layers": names,
            "preact_q": [metrics.get(layer_tag("preact_q", n)) for n in names],
            "grad_preact_q": [metrics.get(layer_tag("grad_preact_q", n)) for n in names],
        }
        self.profile.setdefault("first", profile)
        self.profile["last"] = profile

    def state_dict(self) -> dict[str, Any]:
        # a resumed run keeps its step-0 profile and spectrum
        return {"profile": self.profile, "jacobian": self.jacobian}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.profile = dict(state_dict.get("profile", {}))
        self.jacobian = state_dict.get("jacobian")

    def _log_histograms(self, trainer: L.Trainer, pending: dict[str, Any]) -> None:
        step = pending["step"]
        for logger in trainer.loggers:
            if not isinstance(logger, TensorBoardLogger):
                continue
            writer = logger.experiment
            for name, weight in pending["before"].items():
                add_histogram(writer, layer_tag("weight", name), weight, step)
                if name in pending["grads"]:
                    add_histogram(writer, layer_tag("grad", name), pending["grads"][name], step)
                if name in pending["preacts"]:
                    add_histogram(writer, layer_tag("preact", name), pending["preacts"][name], step)


# the spectrum's scalars, logged as jacobian_tag(<key>): means over the inputs of spectrum_stats
JACOBIAN_SCALARS = ("m1", "spread", "s_max")


def _gradient_ratios(net: nn.Module, metrics: dict[str, float]) -> dict[str, float]:
    """grad_preact_q of each hidden layer over the last hidden layer's; none when that is 0 or
    not finite (zero init: no gradient reaches the hidden layers)."""
    names = [name for name, _, _ in hidden_layers(net)]
    last = metrics.get(layer_tag("grad_preact_q", names[-1])) if names else None
    if last is None or not (math.isfinite(last) and last > 0):
        return {}
    return {
        layer_tag("grad_preact_ratio", n): metrics[layer_tag("grad_preact_q", n)] / last
        for n in names
        if layer_tag("grad_preact_q", n) in metrics
    }


def _weight_leaf(layer: nn.Module) -> Tensor:
    """The parameter that holds a Linear's weight: W, or the direction v under weight norm."""
    if nn.utils.parametrize.is_parametrized(layer, "weight"):
        return layer.parametrizations.weight.original1
    return layer.weight


def _linears(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every Linear, in forward order (a residual block's too: ``block3.fc1``)."""
    return [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Linear)]
