"""The input-output Jacobian's spectrum at init, measured, beside its free-probability prediction
(``theory.jacobian_moments``; Pennington, Schoenholz & Ganguli 2017). Torch; no Hydra.

For a plain initlab MLP with hidden layers fc1..fcL (pre-activations h_1..h_L), the Jacobian of
the hidden stack, per input:

    J = dh_L / dh_1 = W_L D_{L-1} W_{L-1} ... W_2 D_1,     D_l = diag(phi'(h_l)),

the analogue of the paper's J = dx^L / dh^0: the first layer (784 -> n_1) and the output layer
are not part of it, so J is square when the hidden layers have one width (n_L x n_1 otherwise:
its min(n_L, n_1) singular values, the eigenvalues of J J^T on the smaller side). It is built in
float64 by batched products (J <- W_l (d_l * J)), and its singular values come from an SVD per
input (``torch.linalg.svdvals``), so the width is capped at ``MAX_WIDTH``.

Per input: lambda = s^2 (the eigenvalues of J J^T), m1 = mean(lambda), var = var(lambda)
(population), spread = var / m1^2 and s_max. The spread is the estimator to compare with the
theory: it is scale free, whereas m1 itself fluctuates log-normally from input to input and init
to init at finite width (a product of L factors), which makes the raw variance heavy-tailed.
Aggregated: the mean of the per-input values, with a standard error from the per-seed means
(the inits are the independent units; the inputs of one init are correlated).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from initlab.inits import bias_moments, weight_variance
from initlab.propagation.theory import WEIGHT_S1, jacobian_moments, predict

MAX_WIDTH = 1024  # an SVD of an n x n matrix per input: O(n^3) time
HISTOGRAM_BINS = 40
QUANTITIES = ("m1", "var", "spread", "s_max")

# How each init draws its weights, for the S-transform coefficient s1 (theory.WEIGHT_S1):
# i.i.d. entries, Gaussian or uniform ("gaussian": W^T W tends to Marchenko-Pastur whatever the
# entries' law, so uniform weights share s1 = -1 to leading order in 1/N), or a scaled orthogonal
# matrix (lsuv: orthogonal, then each layer multiplied by a number). Inits in neither (zero,
# constant, zero_identity, the residual inits) get no prediction.
IID_INITS = frozenset(
    {
        "small_uniform", "small_normal", "large_uniform", "large_normal", "xavier",
        "xavier_normal", "he", "he_uniform", "kaiming", "tutorial_he", "lecun", "standard",
        "default",
    }
)  # fmt: skip
ORTHOGONAL_INITS = frozenset({"orthogonal", "lsuv"})


def weight_ensemble(init: Mapping[str, Any]) -> str | None:
    """The ``theory.WEIGHT_S1`` key of an init config (``{"name": ..., **params}``): mean_field's
    ``weights``, "orthogonal" for orthogonal and lsuv, "gaussian" for the i.i.d. inits (normal or
    uniform), None for the others."""
    name = init["name"]
    if name == "mean_field":
        return str(init.get("weights", "gaussian"))
    if name in ORTHOGONAL_INITS:
        return "orthogonal"
    return "gaussian" if name in IID_INITS else None


def hidden_stack(net: nn.Module) -> tuple[list[nn.Linear], list[nn.Module]]:
    """The hidden Linear layers fc1..fcL and their activations act1..actL of a plain initlab MLP.

    ValueError, one line, for what the measurement does not support: a norm layer (batchnorm,
    layernorm: the norm's own Jacobian couples the units), any other layout (a residual net),
    fewer than two hidden layers (J = dh_1/dh_1 = I), a hidden width above ``MAX_WIDTH``. Weight
    norm is supported: ``layer.weight`` is the effective weight.
    """
    names = [n for n, _ in net.named_children() if n != "flatten"]
    children = dict(net.named_children())
    if norms := [n for n in names if n.startswith("norm")]:
        kind = type(children[norms[0]]).__name__
        raise ValueError(
            f"the Jacobian spectrum is measured without norm layers (this net has {kind})"
        )
    depth = (len(names) - 1) // 2
    expected = [x for i in range(1, depth + 1) for x in (f"fc{i}", f"act{i}")] + ["out"]
    if names != expected or not all(
        isinstance(children[f"fc{i}"], nn.Linear) for i in range(1, depth + 1)
    ):
        raise ValueError(
            "the Jacobian spectrum is measured for a plain MLP (fc1, act1, ..., out); this net "
            f"has {', '.join(names[:4])}{', ...' if len(names) > 4 else ''}"
        )
    if depth < 2:
        raise ValueError(
            f"the Jacobian dh_L/dh_1 needs at least 2 hidden layers; this net has {depth}"
        )
    fcs = [children[f"fc{i}"] for i in range(1, depth + 1)]
    widest = max(fc.out_features for fc in fcs)
    if widest > MAX_WIDTH:
        raise ValueError(
            f"the Jacobian spectrum is measured up to width {MAX_WIDTH} (an SVD per input); "
            f"this net has a hidden layer of width {widest}"
        )
    return fcs, [children[f"act{i}"] for i in range(1, depth + 1)]


def activation_derivative(act: nn.Module, h: Tensor) -> Tensor:
    """phi'(h) elementwise, by autograd through the activation module itself: the derivative
    back-propagation uses (relu'(0) = 0), for any elementwise activation."""
    with torch.enable_grad():
        z = h.detach().requires_grad_(True)
        out = act(z)
        if out is z:  # nn.Identity
            return torch.ones_like(h)
        (grad,) = torch.autograd.grad(out.sum(), z)
    return grad


def jacobian(weights: Sequence[Tensor], derivs: Sequence[Tensor]) -> Tensor:
    """J = W_L D_{L-1} ... W_2 D_1 per input, (B, n_L, n_1) in float64: ``weights`` are W_2..W_L,
    ``derivs`` phi'(h_1)..phi'(h_{L-1}), each (B, n_l)."""
    if len(weights) != len(derivs) or not weights:
        raise ValueError(
            f"{len(weights)} weights and {len(derivs)} derivatives: need as many, >= 1"
        )
    w0, d0 = weights[0].detach().double(), derivs[0].detach().double()
    j = w0[None] * d0[:, None, :]  # W_2 D_1, without multiplying by the identity
    for w, d in zip(weights[1:], derivs[1:], strict=True):
        j = w.detach().double() @ (d.detach().double()[:, :, None] * j)
    return j


def singular_values(j: Tensor, exact: bool = True) -> Tensor:
    """The singular values of each J, (B, min(n_L, n_1)), in decreasing order.

    ``exact``: an SVD (``torch.linalg.svdvals``). Otherwise the square roots of the eigenvalues
    of the smaller Gram matrix J J^T or J^T J (``eigvalsh``, 2-3 times cheaper): accurate to
    about 1e-8 of s_max, which the moments and a histogram need, not the smallest values.
    """
    if exact:
        return torch.linalg.svdvals(j)
    gram = j @ j.mT if j.shape[-2] <= j.shape[-1] else j.mT @ j
    return torch.linalg.eigvalsh(gram).clamp_min(0.0).sqrt().flip(-1)


@torch.no_grad()
def measure_spectrum(net: nn.Module, x: Tensor) -> Tensor:
    """The singular values of J = dh_L/dh_1 (``jacobian``) for each input of ``x``: a forward
    pass in float64 to get the D_l, then ``jacobian`` and an SVD. ValueError (``hidden_stack``)
    for a net it does not support."""
    fcs, acts = hidden_stack(net)
    a = x.flatten(1).double()
    derivs = []
    for fc, act in zip(fcs[:-1], acts[:-1], strict=True):
        bias = fc.bias.double() if fc.bias is not None else None
        h = F.linear(a, fc.weight.double(), bias)
        derivs.append(activation_derivative(act, h))
        a = act(h)
    return singular_values(jacobian([fc.weight for fc in fcs[1:]], derivs))


def spectrum_stats(s: Tensor) -> dict[str, Tensor]:
    """Per input (a row of singular values ``s``): the mean ``m1``, population variance ``var``
    and relative variance ``spread`` = var / m1^2 of lambda = s^2, and the largest ``s_max``."""
    lam = s.double().pow(2)
    m1 = lam.mean(-1)
    var = lam.var(-1, correction=0)
    return {"m1": m1, "var": var, "spread": var / m1.pow(2), "s_max": s.amax(-1).double()}


def _histogram(spectra: Sequence[Tensor]) -> dict[str, Any]:
    """A histogram of log10 s over every input and seed. Values at or below the numerical rank
    tolerance (s_max n eps, as numpy's matrix_rank) are reported as a fraction, not binned:
    exact zeros (a relu D zeroes the directions of its inactive units) and values below float64's
    resolution (the smallest singular values of a long product of Gaussian matrices)."""
    s = torch.cat([x.reshape(len(x), -1) for x in spectra]).double()
    tol = s.amax(-1, keepdim=True) * s.shape[-1] * torch.finfo(torch.float64).eps
    nonzero = s[s > tol]
    zero_fraction = 1.0 - nonzero.numel() / max(s.numel(), 1)
    if not nonzero.numel():
        return {"log10_edges": [], "counts": [], "zero_fraction": zero_fraction}
    counts, edges = np.histogram(np.log10(nonzero.cpu().numpy()), bins=HISTOGRAM_BINS)
    return {
        "log10_edges": [float(e) for e in edges],
        "counts": [int(c) for c in counts],
        "zero_fraction": zero_fraction,
    }


def _finite_mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values and all(map(math.isfinite, values)) else None


def summarize(spectra: Sequence[Tensor]) -> dict[str, Any]:
    """The measured side of the record, from each seed's singular values (B, k): for each of
    ``QUANTITIES``, ``measured`` (the mean over seeds of the per-seed mean over inputs),
    ``seed_se`` (the standard deviation of the per-seed means over sqrt(seeds): the seeds are the
    independent units) and ``per_seed``; and the ``histogram`` of log10 s."""
    per_seed = [spectrum_stats(s) for s in spectra]
    out: dict[str, Any] = {}
    for key in QUANTITIES:
        means = [float(st[key].mean()) for st in per_seed]
        finite = all(map(math.isfinite, means))
        se = statistics.stdev(means) / math.sqrt(len(means)) if finite and len(means) > 1 else None
        out[key] = {"measured": _finite_mean(means), "seed_se": se, "per_seed": means}
    out["histogram"] = _histogram(spectra)
    return out


def predict_spectrum(
    init: Mapping[str, Any],
    sizes: Sequence[int],
    weight_vars: Sequence[float | None],
    biases: Sequence[tuple[float, float]],
    qs: Sequence[float | None],
    activation: str,
) -> tuple[dict[str, float] | None, str | None]:
    """(``theory.jacobian_moments`` of the net, None), or (None, why not). ``sizes`` are the
    widths n_0..n_{L+1}; ``weight_vars``, ``biases`` and ``qs`` (the mean-field q of each Linear
    layer, ``theory.predict``) are per Linear layer. Factor l pairs W_{l+1} (sigma_w2 = n_l v)
    with D_l at q_l."""
    weights = weight_ensemble(init)
    hidden = list(sizes[1:-1])
    if weights not in WEIGHT_S1:
        return (
            None,
            f"no prediction for init={init['name']}: its weights are neither i.i.d. nor orthogonal",
        )
    if len(set(hidden)) > 1:
        return None, f"predicted for one hidden width only (here {'-'.join(map(str, hidden))})"
    n_factors = len(hidden) - 1
    wv = [weight_vars[k] for k in range(1, n_factors + 1)]
    q = [qs[k] for k in range(n_factors)]
    if any(v is None for v in wv) or any(v is None for v in q):
        return None, "no mean-field prediction of the weight variances or the q_l"
    if any(b[0] != 0.0 for b in biases[:n_factors]):
        return None, "no prediction with nonzero-mean biases (the D_l would be off-centre)"
    sigma_w2s = [hidden[0] * float(v) for v in wv]  # type: ignore[arg-type]
    moments = jacobian_moments(activation, sigma_w2s, [float(v) for v in q], weights)  # type: ignore[arg-type]
    if not all(map(math.isfinite, moments.values())):
        return None, "the predicted moments overflow float64"
    return moments, None


def jacobian_record(
    spectra: Sequence[Tensor],
    init: Mapping[str, Any],
    sizes: Sequence[int],
    weight_vars: Sequence[float | None],
    biases: Sequence[tuple[float, float]],
    qs: Sequence[float | None],
    activation: str,
    mean_field: Mapping[str, Any] | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """The ``jacobian`` section of a propagation record: each seed's singular values measured
    (``summarize``) beside the prediction (``predict_spectrum``), and, when the hidden layers
    share one sigma_w2 (``mean_field``, ``measure.fixed_points``), chi_1^(L-1), the theory's m1
    with every D at q*. ``note`` (and no measurement): why the net is not measured."""
    hidden = list(sizes[1:-1])
    record: dict[str, Any] = {
        "available": note is None and bool(spectra),
        "note": note,
        "inputs": int(spectra[0].shape[0]) if spectra else 0,
        "factors": len(hidden) - 1,
        "shape": [hidden[-1], hidden[0]] if hidden else None,
        "weights": weight_ensemble(init),
    }
    if not record["available"]:
        return record
    predicted, why = predict_spectrum(init, sizes, weight_vars, biases, qs, activation)
    measured = summarize(spectra)
    for key in QUANTITIES:
        record[key] = {**measured[key], "predicted": predicted.get(key) if predicted else None}
    record["histogram"] = measured["histogram"]
    record["chi_1_power"] = (
        mean_field["chi_1"] ** record["factors"] if mean_field and mean_field.get("chi_1") else None
    )
    record["prediction_note"] = why
    return record


def run_section(
    measured: Mapping[str, Any] | None,
    init: Mapping[str, Any],
    sizes: Sequence[int],
    activation: str,
) -> dict[str, Any] | None:
    """results.json's ``jacobian``: a training run's spectrum at step 0 (``measured``, the
    diagnostics' means over the inputs: m1, var, spread, s_max, and the batch's q0), with the
    prediction for its net and init from q0 (``predicted``: m1, spread, var; null with
    ``prediction_note`` saying why). None when nothing was measured."""
    if not measured:
        return None
    hidden = list(sizes[1:-1])
    out = {
        **measured,
        "factors": len(hidden) - 1,
        "shape": [hidden[-1], hidden[0]],
        "weights": weight_ensemble(init),
    }
    name = init["name"]
    params = {k: v for k, v in init.items() if k != "name"}
    fans = list(zip(sizes[:-1], sizes[1:], strict=True))
    try:
        wvars = [weight_variance(name, params, fi, fo, activation) for fi, fo in fans]
        biases = [bias_moments(name, params, fi, fo) for fi, fo in fans]
    except ValueError as exc:
        out.update(predicted=None, prediction_note=str(exc))
        return out
    q0 = measured.get("q0")
    qs = (
        predict(sizes, wvars, biases, q0, activation)["q"] if q0 is not None else [None] * len(fans)
    )
    predicted, why = predict_spectrum(init, sizes, wvars, biases, qs, activation)
    out.update(predicted=predicted, prediction_note=why)
    return out
