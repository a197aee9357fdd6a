"""The measurement: the network train.py would train, at init, through one forward and backward
pass recorded with hooks, beside the mean-field prediction (``theory``). Torch; no Hydra.

Measured in float64 (from the float32 init), so the huge or tiny moments of deep, badly scaled
nets stay finite; in training mode, so BatchNorm uses the batch statistics, as in training.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from initlab.config import ConfigError, validate_propagate
from initlab.data import MNISTDataModule
from initlab.inits import INITS, apply_init, bias_moments, weight_variance
from initlab.mlp import build_mlp, residual_blocks, resolve_hidden_sizes
from initlab.propagation import SCHEMA_VERSION
from initlab.propagation.spectrum import jacobian_record, measure_spectrum
from initlab.propagation.theory import (
    c_star,
    chi_1,
    depth_scales,
    predict,
    predict_correlation,
    q_star,
)

# The pair correlation c_l is averaged over every distinct pair of the first CORRELATION_INPUTS
# inputs (19,900 pairs): a B x B Gram matrix per layer for all B would cost B^2 n per layer.
CORRELATION_INPUTS = 200


def mean_correlation(h: Tensor) -> float:
    """Mean over distinct pairs (a, b) of the rows' cosine similarity <h_a, h_b> / |h_a| |h_b|:
    the empirical c = E[h_a h_b] / sqrt(E[h_a^2] E[h_b^2]) over units. nan if a row is 0."""
    u = h / h.norm(dim=1, keepdim=True)
    g = u @ u.T
    m = len(h)
    return float((g.sum() - g.diagonal().sum()) / (m * (m - 1)))


def measure(net: nn.Sequential, x: Tensor, y: Tensor) -> list[dict[str, float]]:
    """One forward and backward pass of an initlab MLP on (x, y), recorded with forward hooks.

    Per Linear layer, in order: ``q`` (E[z^2] of the activation's input: the norm's output if
    there is one, else the Linear's; the logits for the output layer), ``q_linear``, ``post_q``
    and ``dead_fraction`` (hidden layers), ``grad_q`` (E[(B dL/dh)^2] at the Linear's output,
    L = mean cross-entropy over the B inputs), ``weight_grad_norm`` (||dL/dW||_F, with W the
    effective weight, also under weight norm) and ``c`` (``mean_correlation`` of the Linear's
    output over the first ``CORRELATION_INPUTS`` inputs).
    """
    if residual_blocks(net):
        raise ValueError(
            "measure() follows a plain MLP's Linear layers: a residual net is measured per block "
            "(initlab.propagation.residual.measure_residual)"
        )
    children = dict(net.named_children())
    linears = [(n, m) for n, m in children.items() if isinstance(m, nn.Linear)]
    records: dict[str, dict[str, Any]] = {n: {} for n, _ in linears}
    handles = []

    def linear_hook(name: str) -> Callable:
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            output.retain_grad()
            records[name]["input"], records[name]["h"] = inputs[0], output

        return hook

    def act_hook(name: str) -> Callable:
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            records[name]["z"], records[name]["a"] = inputs[0].detach(), output.detach()

        return hook

    for name, layer in linears:
        handles.append(layer.register_forward_hook(linear_hook(name)))
        act = children.get(f"act{name[2:]}") if name.startswith("fc") else None
        if act is not None:
            handles.append(act.register_forward_hook(act_hook(name)))
    try:
        logits = net(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
    finally:
        for handle in handles:
            handle.remove()
    batch = len(x)
    rows = []
    for name, _ in linears:
        r = records[name]
        h, delta = r["h"].detach(), r["h"].grad
        row = {
            "q": float(r.get("z", h).pow(2).mean()),
            "q_linear": float(h.pow(2).mean()),
            "grad_q": float((delta * batch).pow(2).mean()),
            "weight_grad_norm": float((delta.T @ r["input"].detach()).norm()),
            "c": mean_correlation(h[:CORRELATION_INPUTS]),
        }
        if "a" in r:
            row["post_q"] = float(r["a"].pow(2).mean())
            row["dead_fraction"] = float((r["a"] == 0).all(dim=0).double().mean())
        rows.append(row)
    return rows


def fixed_points(
    sizes: Sequence[int],
    weight_vars: Sequence[float | None],
    biases: Sequence[tuple[float, float]],
    activation: str,
    norm: str,
) -> dict[str, Any] | None:
    """The mean-field fixed points and depth scales (``theory``) of the hidden-to-hidden layers,
    when they all share one sigma_w2 = fan_in v and one sigma_b2 with zero-mean biases (what the
    theory is for: a deep net of identical layers, no norm); None otherwise."""
    inner = range(1, len(sizes) - 2)  # layers 2..L: hidden in and hidden out
    if norm != "none" or not inner or any(weight_vars[k] is None for k in inner):
        return None
    sw = {round(sizes[k] * float(weight_vars[k]), 12) for k in inner}  # type: ignore[arg-type]
    sb = {biases[k] for k in inner}
    if len(sw) != 1 or len(sb) != 1 or next(iter(sb))[0] != 0.0:
        return None
    sigma_w2, sigma_b2 = next(iter(sw)), next(iter(sb))[1]
    xi_q, xi_c = depth_scales(activation, sigma_w2, sigma_b2)
    return {
        "sigma_w2": sigma_w2,
        "sigma_b2": sigma_b2,
        "q_star": q_star(activation, sigma_w2, sigma_b2),
        "c_star": c_star(activation, sigma_w2, sigma_b2),
        "chi_1": chi_1(activation, sigma_w2, sigma_b2),
        "xi_q": xi_q,
        "xi_c": xi_c,
    }


def init_seeds(seed: int, n: int) -> list[int]:
    """n well-mixed, non-overlapping seeds for the inits of run seed ``seed``."""
    states = np.random.SeedSequence(int(seed)).spawn(n)
    return [int(s.generate_state(1)[0]) for s in states]


def build_network(
    init: Mapping[str, Any],
    hidden_sizes: Sequence[int],
    input_size: int = 784,
    num_classes: int = 10,
    activation: str = "relu",
    norm: str = "none",
    seed: int = 0,
    batch: Tensor | None = None,
    residual: bool = False,
    branch_layers: int = 2,
) -> nn.Sequential:
    """The network train.py would train at step 0: the same builder and ``apply_init`` call (the
    init before weight norm; ``batch``, the training inputs, for data-dependent inits), after
    ``torch.manual_seed(seed)``. Returned in float64 (the values are the float32 init's) and in
    training mode."""
    torch.manual_seed(seed)
    init_fn = partial(apply_init, spec=dict(init), batch=batch, activation=activation)
    net = build_mlp(
        input_size, hidden_sizes, num_classes, activation, norm, init_fn, init_name=init["name"],
        residual=residual, branch_layers=branch_layers,
    )  # fmt: skip
    return net.double().train()


def _summary(values: Sequence[float | None], predicted: float | None = None) -> dict[str, Any]:
    """``measured`` is the mean over seeds (what the prediction is for: E[moment]); the median
    sits below it by design, as a product of many layer factors is spread log-normally."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    mean = sum(finite) / len(finite) if len(finite) == len(values) and finite else None
    return {
        "measured": mean,
        "median": statistics.median(finite) if finite else None,
        "seed_std": statistics.stdev(finite) if len(finite) > 1 else None,
        "predicted": predicted,
        "per_seed": list(values),
    }


def propagate(
    init: Mapping[str, Any],
    hidden_sizes: Sequence[int],
    x: Tensor,
    y: Tensor,
    seeds: Sequence[int],
    activation: str = "relu",
    norm: str = "none",
    num_classes: int = 10,
    init_batch: Tensor | None = None,
    jacobian_inputs: int = 0,
    residual: bool = False,
    branch_layers: int = 2,
) -> dict[str, Any]:
    """Measure the network at init for each seed in ``seeds``, predict, and put them side by side.

    ``init`` is the init's config (``{"name": ..., "bias": ..., **params}``); ``init_batch`` the
    inputs a data-dependent init (lsuv) sees (default ``x``); ``jacobian_inputs``: the spectrum of
    the hidden stack's Jacobian on that many of the first inputs (``spectrum``; 0: none, and the
    record's ``jacobian`` is null). Returns the record that ``propagation.json`` holds, less the
    run's config and input description. ``residual``: a residual net of ``branch_layers`` layers
    per block, measured per block on its stream (``residual.propagate_residual``).
    """
    init_batch = x if init_batch is None else init_batch
    if residual:  # per block, on the residual stream: its own module
        from initlab.propagation.residual import propagate_residual

        return propagate_residual(
            init, hidden_sizes, x, y, seeds, activation, norm, num_classes, init_batch,
            branch_layers,
        )  # fmt: skip
    input_size = x.shape[1]
    sizes = [input_size, *hidden_sizes, num_classes]
    per_seed = []
    spectra: list[Tensor] = []
    jacobian_note: str | None = None
    for s in seeds:
        net = build_network(
            init, hidden_sizes, input_size, num_classes, activation, norm, s, init_batch
        )
        per_seed.append(measure(net, x.to(torch.float64), y))
        if jacobian_inputs and jacobian_note is None:
            try:
                spectra.append(measure_spectrum(net, x[:jacobian_inputs]))
            except ValueError as exc:  # a net the measurement does not support: say why
                jacobian_note = str(exc)
    x = x.to(torch.float64)
    name = init["name"]
    params = {k: v for k, v in init.items() if k != "name"}
    fans = list(zip(sizes[:-1], sizes[1:], strict=True))
    wvars = [weight_variance(name, params, fi, fo, activation) for fi, fo in fans]
    biases = [bias_moments(name, params, fi, fo) for fi, fo in fans]
    q0 = float(x.pow(2).mean())
    pred = predict(sizes, wvars, biases, q0, activation, norm)
    c0 = mean_correlation(x[:CORRELATION_INPUTS])
    pred_c = (
        predict_correlation(sizes, wvars, biases, pred["q"], q0, c0, activation)
        if norm == "none"
        else [None] * len(fans)
    )
    layers = []
    n_layers = len(fans)
    for k, (fi, fo) in enumerate(fans):
        hidden = k < n_layers - 1
        col = [row[k] for row in per_seed]
        layer: dict[str, Any] = {
            "index": k + 1,
            "name": f"fc{k + 1}" if hidden else "out",
            "fan_in": fi,
            "fan_out": fo,
            "hidden": hidden,
            "weight_variance": wvars[k],
            "bias_mean": biases[k][0],
            "bias_variance": biases[k][1],
            "q": _summary([c["q"] for c in col], pred["q"][k]),
        }
        if norm in ("batchnorm", "layernorm") and hidden:
            layer["q_linear"] = _summary([c["q_linear"] for c in col], pred["q_linear"][k])
        post = _summary([c["post_q"] for c in col], pred["post_q"][k]) if hidden else None
        layer["post_q"] = post
        layer["dead_fraction"] = _summary([c["dead_fraction"] for c in col]) if hidden else None
        layer["grad_q"] = _summary([c["grad_q"] for c in col], pred["grad_q"][k])
        layer["weight_grad_norm"] = _summary([c["weight_grad_norm"] for c in col])
        layer["c"] = _summary([c["c"] for c in col], pred_c[k])
        layers.append(layer)
    if pred["q"][0] is None:
        note = INITS[name].no_variance or "no closed-form weight variance for this init"
    elif pred["grad_q"][0] is None:
        note = f"forward only: no backward prediction through {norm}"
    else:
        note = None
    mean_field = fixed_points(sizes, wvars, biases, activation, norm)
    return {
        "schema_version": SCHEMA_VERSION,
        "init": name,
        "init_params": params,
        "norm": norm,
        "activation": activation,
        "depth": len(hidden_sizes),
        "hidden_sizes": list(hidden_sizes),
        "widths": sizes,
        "seeds": list(seeds),
        "q0": q0,
        "c0": c0,
        "correlation": {
            "inputs": min(CORRELATION_INPUTS, len(x)),
            "pairs": min(CORRELATION_INPUTS, len(x)) * (min(CORRELATION_INPUTS, len(x)) - 1) // 2,
            "predicted": pred_c[0] is not None,
        },
        "prediction": {
            "available": pred["q"][0] is not None,
            "method": pred["method"],
            "backward": pred["grad_q"][0] is not None,
            "note": note,
        },
        "mean_field": mean_field,
        "jacobian": jacobian_record(
            spectra, init, sizes, wvars, biases, pred["q"], activation, mean_field, jacobian_note
        )
        if jacobian_inputs
        else None,
        "layers": layers,
    }


# -- inputs and config -------------------------------------------------------------------------
def gaussian_inputs(n: int, input_size: int, num_classes: int, seed: int) -> tuple[Tensor, Tensor]:
    """N(0, 1) inputs and uniform random labels, from a generator seeded with ``seed``."""
    gen = torch.Generator().manual_seed(int(seed))
    x = torch.randn(n, input_size, generator=gen)
    return x, torch.randint(0, num_classes, (n,), generator=gen)


def training_split(data: Mapping[str, Any], seed: int = 0) -> tuple[Tensor, Tensor, str]:
    """The training images (normalized, as train.py sees them) and labels of the data config,
    and the name of the dataset really loaded ("mnist", "mnist-embedded-5k" offline, or
    "synthetic")."""
    dm = MNISTDataModule(
        root=data["root"],
        name=data["name"],
        val_size=data["val_size"],
        download=data["download"],
        fallback=data["fallback"],
        mean=data["mean"],
        std=data["std"],
        split_seed=data["split_seed"],
        seed=seed,
        synthetic_train=data.get("synthetic_train", 1000),
        synthetic_test=data.get("synthetic_test", 200),
    )
    dm.setup()
    return dm.train.x, dm.train.y, dm.dataset_name


def validate(cfg: Mapping[str, Any]) -> None:
    """Raise ConfigError (one line: field, value, what is allowed) for a bad propagate config:
    the schema's checks (``initlab.config.validate_propagate``), the same as train.py's for the
    groups they share."""
    validate_propagate(cfg)


def run_propagation(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The whole study for one composed config (plain mappings): inputs, measure, predict.

    Returns the propagation.json record, with the config and a description of the inputs.
    """
    validate(cfg)
    p, model = cfg["propagate"], cfg["model"]
    hidden = resolve_hidden_sizes(model.get("depth"), model.get("width"), model.get("hidden_sizes"))
    n = int(p["n_inputs"])
    if p["inputs"] == "gaussian":
        x, y = gaussian_inputs(n, model["input_size"], model["num_classes"], cfg["seed"])
        dataset, init_batch = "gaussian", x
    else:
        # the first n training images; a data-dependent init sees the whole split, as in train.py
        init_batch, labels, dataset = training_split(cfg["data"], cfg["seed"])
        if n > len(init_batch):
            raise ConfigError(
                f"propagate.n_inputs={n} exceeds the {len(init_batch)} training images of "
                f"{dataset}: use at most {len(init_batch)}"
            )
        if init_batch.shape[1] != model["input_size"]:
            raise ConfigError(
                f"model.input_size={model['input_size']} but the images have "
                f"{init_batch.shape[1]} pixels"
            )
        x, y = init_batch[:n], labels[:n]
    record = propagate(
        dict(cfg["init"]),
        hidden,
        x,
        y,
        init_seeds(cfg["seed"], int(p["seeds"])),
        activation=model["activation"],
        norm=cfg["norm"]["name"],
        num_classes=model["num_classes"],
        init_batch=init_batch,
        jacobian_inputs=int(p.get("jacobian_inputs", 0)),
        residual=model["residual"],
        branch_layers=model["branch_layers"],
    )
    record["inputs"] = {"kind": p["inputs"], "dataset": dataset, "n": n}
    record["config"] = dict(cfg)
    return record
