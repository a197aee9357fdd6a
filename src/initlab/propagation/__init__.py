"""Signal propagation at init: per-layer moments of an MLP, measured and predicted (mean field).

For one network at init, on one batch of inputs, over independent inits:

- forward: the pre-activation second moment q_l = E[h_l^2] (the input of the activation; the
  logits for the output layer), the post-activation second moment E[phi(h_l)^2], and the
  fraction of dead units (output exactly 0 for every input of the batch);
- backward: the second moment of delta_l = dL/dh_l at each Linear output, for the cross-entropy
  of the batch's labels (per example: the gradient of that example's loss, i.e. the gradient of
  the batch-mean loss times the batch size), and the Frobenius norm of the weight gradient of the
  batch-mean loss (what training's first step sees);

and beside them the mean-field prediction from the init's weight variance v_l
(``initlab.inits.weight_variance``; no fitting):

    q_1 = n_0 v_1 q_0 + E[b^2],     q_l = n_{l-1} v_l E[phi(h_{l-1})^2] + E[b^2],
    E[delta_{l-1}^2] = E[phi'(h_{l-1})^2] n_l v_l E[delta_l^2].

The forward recursion is exact in expectation only for ReLU, leaky ReLU and linear networks with
zero-mean symmetric biases (there h is symmetric given the previous layer, so E[relu(h)^2] =
E[h^2] / 2 and E[relu'(h)^2] = 1/2 with no Gaussian assumption); otherwise h is taken as
N(b, q - b^2). The backward recursion always rests on gradient independence (the backward
weights taken independent of the forward pass), an approximation: docs/propagation.md measures
its error. Each record's ``prediction.method`` says, per quantity, which of these holds.

The modules, by job:

- ``theory``: the recursions, numpy and math only (``activation_moments``,
  ``output_delta_moment``, ``predict``).
- ``measure`` (torch): build the network as train.py would, measure it with hooks, put the
  measurement beside the prediction (``propagate``, ``run_propagation``).
- ``spectrum`` (torch): the singular values of the hidden stack's Jacobian dh_L/dh_1 per input,
  beside ``theory.jacobian_moments`` (``measure_spectrum``, ``jacobian_record``; the record's
  ``jacobian``, and the diagnostics' spectrum during training).
- ``residual`` (torch): a residual net's stream per block, measured beside
  ``theory.predict_residual`` (``propagate_residual``; ``measure.propagate`` dispatches to it).
- ``plots``: draw and tabulate records (``plot_run``, ``plot_sweep``, ``table``;
  ``plot_residual``, ``plot_residual_sweep``, ``residual_table``; ``plot_spectrum``,
  ``plot_spectrum_sweep``).

This file and ``theory`` import no torch. No Hydra anywhere; ``scripts/propagate.py`` is the
command line.
"""

from __future__ import annotations

PROPAGATION_FILE = "propagation.json"
PLOT_FILE = "propagation.png"
SWEEP_PLOT_FILE = "propagation_sweep.png"
# residual nets (``residual``): their stream per block, one panel per network
RESIDUAL_SWEEP_PLOT_FILE = "propagation_residual_sweep.png"
SPECTRUM_PLOT_FILE = "spectrum.png"  # the Jacobian's singular values beside the prediction
SPECTRUM_SWEEP_PLOT_FILE = "spectrum_sweep.png"  # the spread against depth, one line per init
# 2: prediction.method is a mapping {"q", "post_q", "grad_q"} -> how (1: one string);
# 3: each layer's correlation "c"; "c0", "correlation", "mean_field" (fixed points, scales);
# 4: "jacobian" (the input-output Jacobian's spectrum, or null when not measured)
SCHEMA_VERSION = 4
