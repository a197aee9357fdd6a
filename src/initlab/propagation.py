"""Signal propagation at init: per-layer moments of an MLP, measured and predicted (mean field).

For one network at init, on one batch of inputs, averaged over independent inits:

- forward: the pre-activation second moment q_l = E[h_l^2] (the input of the activation; the
  logits for the output layer), the post-activation second moment E[phi(h_l)^2], and the
  fraction of dead units (output exactly 0 for every input of the batch);
- backward: the second moment of delta_l = dL/dh_l at each Linear output, for the cross-entropy
  of the batch's labels (per example: the gradient of that example's loss, i.e. the gradient of
  the batch-mean loss times the batch size), and the Frobenius norm of the weight gradient of the
  batch-mean loss (what training's first step sees);

and beside them the mean-field prediction from the init's weight variance v_l (no fitting):

    q_1 = n_0 v_1 q_0 + E[b^2],     q_l = n_{l-1} v_l E[phi(h_{l-1})^2] + E[b^2],
    E[delta_{l-1}^2] = E[phi'(h_{l-1})^2] n_l v_l E[delta_l^2].

For ReLU with zero-mean symmetric biases, E[relu(h)^2] = E[h^2] / 2 and E[relu'(h)^2] = 1/2
exactly (h is symmetric given the previous layer), so the forward recursion is exact in
expectation at any width. Otherwise h_l is taken as Gaussian N(E[b], q_l - E[b]^2): closed forms
for relu / leaky_relu, Gauss-Hermite quadrature for tanh, sigmoid and gelu. With BatchNorm or
LayerNorm the normalized value has q = 1 (before the affine part, which is the identity at init);
the backward prediction through a norm layer is not given (it depends on per-unit batch
variances, not on q). Weight norm is registered after the init and leaves the function (and so
every forward and backward moment) unchanged at init. The backward recursion starts from the
output, where E[delta_L^2] = E[(softmax(z) - onehot(y))^2] is computed for i.i.d. Gaussian logits
z ~ N(0, q_L) by Monte Carlo with a fixed generator; below it, the recursion uses the usual
gradient-independence assumption (the backward weights taken independent of the forward ones),
which is accurate at large width.

Pure torch + numpy; no Hydra. ``scripts/propagate.py`` is the command line.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from initlab.config import ConfigError, validate_propagate
from initlab.data import MNISTDataModule
from initlab.inits import activation_gain, apply_init
from initlab.mlp import ACTIVATIONS, build_mlp, resolve_hidden_sizes

PROPAGATION_FILE = "propagation.json"
PLOT_FILE = "propagation.png"
SWEEP_PLOT_FILE = "propagation_sweep.png"
SCHEMA_VERSION = 1
QUADRATURE_POINTS = 121
OUTPUT_MC_SAMPLES = 200_000
NORM_EPS = 1e-5  # BatchNorm1d / LayerNorm default eps


# -- the init's weight and bias moments ------------------------------------------------------
def _param(params: Mapping[str, Any], keys: Sequence[str], default: float) -> float:
    for k in keys:
        if k in params and params[k] is not None:
            return float(params[k])
    return default


def _uniform_variance(params: Mapping[str, Any], default_bound: float) -> float | None:
    """Variance of U[low, high] (or U[-a, a]); None for a non-centred interval (mean != 0)."""
    if "low" in params or "high" in params:
        low = float(params.get("low", -default_bound))
        high = float(params.get("high", default_bound))
        return (high - low) ** 2 / 12.0 if math.isclose(low, -high) else None
    a = _param(params, ("bound", "a", "scale", "limit"), default_bound)
    return a * a / 3.0


def _normal_variance(params: Mapping[str, Any], default_std: float) -> float | None:
    """Variance of N(mean, std^2); None for mean != 0 (the recursion needs zero-mean weights)."""
    if float(params.get("mean", 0.0) or 0.0) != 0.0:
        return None
    std = _param(params, ("std", "sigma", "scale"), default_std)
    return std * std


def weight_variance(
    name: str,
    params: Mapping[str, Any],
    fan_in: int,
    fan_out: int,
    activation: str = "relu",
) -> float | None:
    """Per-entry variance v of the weights that init ``name`` draws for a (fan_out, fan_in) layer.

    Closed forms of the zero-mean inits (``params``: the init's config minus ``name``). For
    orthogonal, the rows (or columns) have exact norms and the mean square entry is
    gain^2 / max(fan_in, fan_out); that is also the v for which the i.i.d. recursion holds:
    E|W a|^2 / fan_out = gain^2 |a|^2 / max(fan_in, fan_out) for a Haar-random W. Returns None
    where the prediction does not apply: data-dependent inits (lsuv), structured ones
    (zero_identity), nonzero-mean weights (constant), and unknown names. ``activation`` is
    the model's, for the inits whose gain depends on it (kaiming; orthogonal with gain null).
    """
    fi, fo = int(fan_in), int(fan_out)
    gain = _param(params, ("gain",), 1.0)
    if name == "zero":
        return 0.0
    if name == "constant":
        value = _param(params, ("value", "val", "c"), 0.0)
        return 0.0 if value == 0.0 else None
    if name == "small_uniform":
        return _uniform_variance(params, 0.1)
    if name == "small_normal":
        return _normal_variance(params, 0.01)
    if name == "large_uniform":
        return _uniform_variance(params, 1.0)
    if name == "large_normal":
        return _normal_variance(params, 1.0)
    if name in ("xavier", "xavier_uniform", "xavier_normal", "glorot", "glorot_normal"):
        return gain * gain * 2.0 / (fi + fo)
    if name in ("he", "he_uniform", "he_normal"):
        return 2.0 / fi
    if name == "kaiming":  # normal or uniform: the same variance
        fan = fo if params.get("mode", "fan_in") == "fan_out" else fi
        return activation_gain(activation) ** 2 / fan
    if name == "tutorial_he":
        return 2.0 / (3.0 * fi)  # U[-sqrt(2/fi), sqrt(2/fi)]
    if name in ("lecun", "lecun_uniform", "lecun_normal"):
        return gain * gain / fi
    if name == "orthogonal":
        if params.get("gain") is None:
            gain = activation_gain(activation)
        return gain * gain / max(fi, fo)
    if name == "default":
        # nn.Linear's own init, kaiming_uniform_(a=sqrt(5)): U[-1/sqrt(fi), 1/sqrt(fi)]
        return 1.0 / (3.0 * fi)
    return None


def bias_moments(name: str, params: Mapping[str, Any], fan_in: int) -> tuple[float, float]:
    """(mean, variance) of a bias entry, as ``apply_init`` sets it: ``init.bias`` when it is a
    number; when it is null (or absent), PyTorch's U[-1/sqrt(fan_in), 1/sqrt(fan_in)] (variance
    1 / (3 fan_in)) for ``default``, and 0 for every other init."""
    bias = params.get("bias")
    if bias is None:
        return (0.0, 1.0 / (3.0 * int(fan_in))) if name == "default" else (0.0, 0.0)
    return float(bias), 0.0


# Inits whose moments have no closed form from a weight variance: measured only, and why.
MEASUREMENT_ONLY = {
    "lsuv": "data-dependent: each layer is rescaled on the batch",
    "zero_identity": "deterministic identity / Hadamard weights, not i.i.d.",
    "constant": "nonzero-mean weights (every unit the same): the recursion needs zero-mean ones",
}


# -- Gaussian expectations of the activation ---------------------------------------------------
def _phi(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _Phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _activation_module(activation: str) -> nn.Module:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation={activation!r} is not one of: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[activation]()


def activation_moments(activation: str, mean: float, var: float) -> tuple[float, float, str]:
    """(E[phi(h)^2], E[phi'(h)^2], method) for h ~ N(mean, var).

    Exact (no Gaussian assumption) for relu / leaky_relu / linear with mean 0: only the symmetry
    of h is used. Closed-form Gaussian integrals for relu / leaky_relu with a mean; Gauss-Hermite
    quadrature (``QUADRATURE_POINTS`` nodes) for the smooth activations.
    """
    module = _activation_module(activation)
    sd = math.sqrt(max(var, 0.0))
    if activation == "linear":
        return mean * mean + var, 1.0, "exact"
    if activation in ("relu", "leaky_relu"):
        alpha = module.negative_slope if activation == "leaky_relu" else 0.0
        if mean == 0.0:
            return (1 + alpha**2) / 2 * var, (1 + alpha**2) / 2, "exact"
        if sd == 0.0:
            slope = 1.0 if mean > 0 else alpha
            return (slope * mean) ** 2, slope**2, "exact"
        t = mean / sd
        pos = (mean * mean + var) * _Phi(t) + mean * sd * _phi(t)  # E[h^2 1{h>0}]
        neg = (mean * mean + var) * _Phi(-t) - mean * sd * _phi(t)  # E[h^2 1{h<0}]
        return pos + alpha**2 * neg, _Phi(t) + alpha**2 * _Phi(-t), "gaussian closed form"
    nodes, weights = np.polynomial.hermite_e.hermegauss(QUADRATURE_POINTS)
    weights = torch.tensor(weights / math.sqrt(2.0 * math.pi), dtype=torch.float64)
    h = (mean + sd * torch.tensor(nodes, dtype=torch.float64)).requires_grad_(True)
    out = module(h)
    (deriv,) = torch.autograd.grad(out.sum(), h)
    second = float((weights * out.detach() ** 2).sum())
    return second, float((weights * deriv**2).sum()), "gaussian quadrature"


def output_delta_moment(
    q_logits: float, num_classes: int, samples: int = OUTPUT_MC_SAMPLES
) -> float:
    """E[(softmax(z) - onehot(y))^2] averaged over classes, for i.i.d. z_k ~ N(0, q_logits).

    The per-example gradient of cross-entropy with respect to the logits. Monte Carlo with a fixed
    generator (seed 0), so the prediction is a deterministic function of q_logits.
    """
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(samples, num_classes, generator=gen, dtype=torch.float64)
    p = torch.softmax(z * math.sqrt(max(q_logits, 0.0)), dim=1)
    p[:, 0] -= 1.0  # by symmetry the label can be class 0
    return float(p.pow(2).mean())


# -- the prediction ----------------------------------------------------------------------------
def predict(
    sizes: Sequence[int],
    weight_vars: Sequence[float | None],
    biases: Sequence[tuple[float, float]],
    q0: float,
    activation: str = "relu",
    norm: str = "none",
) -> dict[str, Any]:
    """Mean-field moments of the MLP with widths ``sizes`` = [n_0, n_1, ..., n_L] (input to logits).

    ``weight_vars[l]`` and ``biases[l]`` (mean, variance) are layer l+1's; ``q0`` = E[x^2] of the
    inputs. Returns lists over the L Linear layers: ``q`` (the activation's input; logits last),
    ``q_linear`` (the Linear's output, before any norm), ``post_q`` (None for the output layer),
    ``grad_q`` (E[delta^2] at the Linear's output), and ``method`` (how the activation's
    expectations were computed). Entries are None where no prediction exists (an unknown weight
    variance makes every later layer unknown).
    """
    n_layers = len(sizes) - 1
    out: dict[str, Any] = {k: [None] * n_layers for k in ("q", "q_linear", "post_q", "grad_q")}
    deriv: list[float | None] = [None] * n_layers
    methods: set[str] = set()
    m = float(q0)  # E[a_{l-1}^2]: the second moment entering layer l
    for k in range(n_layers):
        v = weight_vars[k]
        if v is None:
            break
        b_mean, b_var = biases[k]
        spread = sizes[k] * v * m + b_var  # the zero-mean part of h
        q_lin = spread + b_mean * b_mean
        out["q_linear"][k] = q_lin
        if k == n_layers - 1:
            out["q"][k] = q_lin
            break
        if norm in ("batchnorm", "layernorm"):
            q = spread / (spread + NORM_EPS)  # both subtract the mean (and so the constant bias)
            post, deriv[k], method = activation_moments(activation, 0.0, q)
        else:
            q = q_lin
            post, deriv[k], method = activation_moments(activation, b_mean, spread)
        methods.add(method)
        out["q"][k], out["post_q"][k] = q, post
        m = post
    q_logits = out["q"][-1]
    if q_logits is not None:
        out["grad_q"][-1] = output_delta_moment(q_logits - biases[-1][0] ** 2, sizes[-1])
        if norm not in ("batchnorm", "layernorm"):
            for k in range(n_layers - 2, -1, -1):
                v_next = weight_vars[k + 1]
                out["grad_q"][k] = deriv[k] * sizes[k + 2] * v_next * out["grad_q"][k + 1]
    if "exact" in methods and len(methods) == 1:
        out["method"] = "exact in expectation (symmetric pre-activations)"
    elif methods:
        out["method"] = " + ".join(sorted(methods))
    else:
        out["method"] = "exact" if q_logits is not None else "none (no closed-form weight variance)"
    return out


# -- the measurement ---------------------------------------------------------------------------
def measure(net: nn.Sequential, x: Tensor, y: Tensor) -> list[dict[str, float]]:
    """One forward and backward pass of an initlab MLP on (x, y), recorded with forward hooks.

    Per Linear layer, in order: ``q`` (E[z^2] of the activation's input: the norm's output if
    there is one, else the Linear's; the logits for the output layer), ``q_linear``, ``post_q``
    and ``dead_fraction`` (hidden layers), ``grad_q`` (E[(B dL/dh)^2] at the Linear's output,
    L = mean cross-entropy over the B inputs) and ``weight_grad_norm`` (||dL/dW||_F, with W the
    effective weight, also under weight norm).
    """
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
        }
        if "a" in r:
            row["post_q"] = float(r["a"].pow(2).mean())
            row["dead_fraction"] = float((r["a"] == 0).all(dim=0).double().mean())
        rows.append(row)
    return rows


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
) -> nn.Sequential:
    """The network train.py would train at step 0: the same builder and ``apply_init`` call (the
    init before weight norm; ``batch``, the training inputs, for data-dependent inits), after
    ``torch.manual_seed(seed)``. Returned in float64 (the values are the float32 init's), so the
    huge or tiny moments of deep nets stay finite, and in training mode (BatchNorm uses the batch
    statistics, as in training)."""
    torch.manual_seed(seed)
    init_fn = partial(apply_init, spec=dict(init), batch=batch, activation=activation)
    net = build_mlp(
        input_size, hidden_sizes, num_classes, activation, norm, init_fn, init_name=init["name"]
    )
    return net.double().train()


def _summary(values: Sequence[float | None], predicted: float | None = None) -> dict[str, Any]:
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
) -> dict[str, Any]:
    """Measure the network at init for each seed in ``seeds``, predict, and put them side by side.

    ``init`` is the init's config (``{"name": ..., "bias": ..., **params}``); ``init_batch`` the
    inputs a data-dependent init (lsuv) sees (default ``x``). Returns the record that
    ``propagation.json`` holds, less the run's config and input description.
    """
    init_batch = x if init_batch is None else init_batch
    input_size = x.shape[1]
    sizes = [input_size, *hidden_sizes, num_classes]
    per_seed = []
    for s in seeds:
        net = build_network(
            init, hidden_sizes, input_size, num_classes, activation, norm, s, init_batch
        )
        per_seed.append(measure(net, x.to(torch.float64), y))
    x = x.to(torch.float64)
    name = init["name"]
    params = {k: v for k, v in init.items() if k != "name"}
    fans = list(zip(sizes[:-1], sizes[1:], strict=True))
    wvars = [weight_variance(name, params, fi, fo, activation) for fi, fo in fans]
    biases = [bias_moments(name, params, fi) for fi, _ in fans]
    q0 = float(x.pow(2).mean())
    pred = predict(sizes, wvars, biases, q0, activation, norm)
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
        layers.append(layer)
    if pred["q"][0] is None:
        note = MEASUREMENT_ONLY.get(name, "no closed-form weight variance for this init")
    elif pred["grad_q"][0] is None:
        note = f"forward only: no backward prediction through {norm}"
    else:
        note = None
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
        "prediction": {
            "available": pred["q"][0] is not None,
            "method": pred["method"],
            "backward": pred["grad_q"][0] is not None,
            "note": note,
        },
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
    )
    record["inputs"] = {"kind": p["inputs"], "dataset": dataset, "n": n}
    record["config"] = dict(cfg)
    return record


# -- plots -------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _series(record: Mapping[str, Any], key: str) -> tuple[list, list, list, list]:
    """(layer index, mean measured, predicted, per-seed values) of moment ``key``."""
    idx, meas, pred, seeds = [], [], [], []
    for layer in record["layers"]:
        s = layer.get(key)
        if s is None:
            continue
        idx.append(layer["index"])
        meas.append(s["measured"])
        pred.append(s["predicted"])
        seeds.append(s["per_seed"])
    return idx, meas, pred, seeds


def _positive(xs: Sequence, ys: Sequence) -> tuple[list, list]:
    pairs = [(a, b) for a, b in zip(xs, ys, strict=True) if b is not None and b > 0]
    return [a for a, _ in pairs], [b for _, b in pairs]


def _draw(ax, record: Mapping[str, Any], key: str, color: str, label: str) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    idx, meas, pred, seeds = _series(record, key)
    for i, vals in zip(idx, seeds, strict=True):
        xs, ys = _positive([i] * len(vals), vals)
        ax.scatter(xs, ys, s=6, color=color, alpha=0.25, linewidths=0)
    xs, ys = _positive(idx, meas)
    ax.plot(xs, ys, "o", color=color, ms=5, label=f"{label} measured")
    xs, ys = _positive(idx, pred)
    if xs:
        ax.plot(xs, ys, "-", color=color, lw=1.5, label=f"{label} predicted")


def _title(record: Mapping[str, Any]) -> str:
    widths = "-".join(map(str, record["widths"]))
    if len(record["widths"]) > 6:
        w = record["widths"]
        widths = f"{w[0]}-{w[1]}x{record['depth']}-{w[-1]}"
    return (
        f"{widths}, {record['activation']}, norm={record['norm']}, "
        f"{record['inputs']['dataset']} inputs, {len(record['seeds'])} seeds"
    )


def _save(fig, path: Path) -> Path:
    """Save a figure atomically (temp file in the same directory, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    tmp.replace(path)
    return path


def plot_run(record: Mapping[str, Any], path: str | Path) -> Path:
    """q_l and E[delta_l^2] against the layer index (log axis): seeds, means, predicted lines."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, ylabel in (
        (axes[0], "q", "q_l = E[h_l^2] (forward)"),
        (axes[1], "grad_q", "E[delta_l^2] = E[(dL/dh_l)^2] (backward)"),
    ):
        _draw(ax, record, key, "C0", record["init"])
        ax.set_yscale("log")
        ax.set_xlabel("layer l")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"init={record['init']}: {_title(record)}", fontsize=10)
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_sweep(records: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """One panel per network (widths, activation, norm, inputs), one colour per init."""
    plt = _pyplot()
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in sorted(records, key=lambda r: (r["depth"], r["widths"], r["init"])):
        groups.setdefault(_title(r), []).append(r)
    inits = sorted({r["init"] for r in records})
    colors = {name: f"C{i % 10}" for i, name in enumerate(inits)}
    cols = min(3, len(groups))
    rows = math.ceil(len(groups) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4.2 * rows), squeeze=False)
    for ax, (title, group) in zip(axes.flat, groups.items(), strict=False):
        for r in group:
            _draw(ax, r, "q", colors[r["init"]], r["init"])
        ax.set_yscale("log")
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("layer l")
        ax.set_ylabel("q_l = E[h_l^2]")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(groups) :]:
        ax.set_visible(False)
    fig.suptitle("q_l at init: points measured (faint: each seed), lines predicted", fontsize=10)
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def find_propagation(sweep_dir: str | Path) -> list[Path]:
    """Every propagation.json below a run or sweep directory, sorted."""
    return sorted(Path(sweep_dir).rglob(PROPAGATION_FILE))


def table(record: Mapping[str, Any]) -> str:
    """A markdown table of one record: measured (mean over seeds) vs predicted, per layer."""

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.3g}"

    lines = [
        "| layer | fan_in | fan_out | q measured | q predicted | post q | dead | "
        "E[delta^2] measured | E[delta^2] predicted | grad norm |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for layer in record["layers"]:
        post, dead = layer["post_q"], layer["dead_fraction"]
        lines.append(
            f"| {layer['index']} | {layer['fan_in']} | {layer['fan_out']} "
            f"| {fmt(layer['q']['measured'])} | {fmt(layer['q']['predicted'])} "
            f"| {fmt(post['measured']) if post else '-'} "
            f"| {fmt(dead['measured']) if dead else '-'} "
            f"| {fmt(layer['grad_q']['measured'])} | {fmt(layer['grad_q']['predicted'])} "
            f"| {fmt(layer['weight_grad_norm']['measured'])} |"
        )
    return "\n".join(lines)
