"""Signal propagation at init: per-layer moments measured beside their mean-field predictions.

    python scripts/propagate.py                                   # the tutorial's net, He, MNIST
    python scripts/propagate.py init=xavier propagate.inputs=gaussian
    python scripts/propagate.py -m init=he,xavier model.depth=2,10,20 model.width=256
    python scripts/propagate.py -m model.residual=true model.width=256 init=he,fixup,skipinit
    python scripts/propagate.py -m init=mean_field init.sigma_w2=1.18919 init.sigma_b2=0.001 \
        init.weights=gaussian,orthogonal model.activation=tanh model.width=256 \
        model.depth=5,20,50 propagate.inputs=mnist propagate.seeds=4   # dynamical isometry
    python scripts/propagate.py --plot outputs/propagation-multirun/<date>/<time>

Each run writes propagation.json and propagation.png into its Hydra run directory, and
spectrum.png (the singular values of the hidden stack's Jacobian beside the free-probability
prediction; propagate.jacobian_inputs, 0: off); a sweep also keeps <sweep dir>/propagation_sweep.png
up to date (one panel per network, one colour per init) and spectrum_sweep.png (the spectrum's
spread against depth), which --plot <dir> redraws from every propagation.json below <dir>. A thin
Hydra edge over initlab.propagation, which does the work without Hydra.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

# No torch here: initlab.propagation.measure (torch) is imported once the command line has
# passed its torch-free checks (``validate``), so that bad input is refused in under a second.
from initlab.cli import preflight
from initlab.config import ConfigError, PropagateSection, validate_propagate
from initlab.errors import DataError
from initlab.propagation import (
    PLOT_FILE,
    PROPAGATION_FILE,
    RESIDUAL_SWEEP_PLOT_FILE,
    SPECTRUM_PLOT_FILE,
    SPECTRUM_SWEEP_PLOT_FILE,
    SWEEP_PLOT_FILE,
)
from initlab.propagation.plots import (
    find_propagation,
    is_residual,
    plot_residual,
    plot_residual_sweep,
    plot_run,
    plot_spectrum,
    plot_spectrum_sweep,
    plot_sweep,
    read_propagation,
    residual_table,
    table,
)
from initlab.results import write_json_atomic

log = logging.getLogger("initlab.propagate")


def plot_dir(directory: str | Path, warn: Callable[[str], Any] = log.warning) -> list[Path]:
    """Draw <directory>/propagation_sweep.png from every propagation.json below it (and, for the
    residual nets among them, propagation_residual_sweep.png); one that cannot be drawn (not a
    regular file, not strict JSON, not a propagation record) is skipped with one line to
    ``warn``. The plots drawn; FileNotFoundError when none can be drawn."""
    paths = find_propagation(directory)
    if not paths:
        raise FileNotFoundError(f"no {PROPAGATION_FILE} below {directory}")
    records, skipped = read_propagation(paths)
    for path, why in skipped:
        warn(f"skipping {path}: {why}")
    if not records:
        raise FileNotFoundError(
            f"no readable {PROPAGATION_FILE} below {directory} ({len(skipped)} skipped)"
        )
    plain = [r for r in records if not is_residual(r)]
    residual = [r for r in records if is_residual(r)]
    drawn = [plot_sweep(plain, Path(directory) / SWEEP_PLOT_FILE)] if plain else []
    if residual:
        drawn.append(plot_residual_sweep(residual, Path(directory) / RESIDUAL_SWEEP_PLOT_FILE))
    if spectrum := plot_spectrum_sweep(records, Path(directory) / SPECTRUM_SWEEP_PLOT_FILE):
        drawn.append(spectrum)  # the records with a Jacobian spectrum: spread against depth
    return drawn


def prediction_lines(prediction: dict) -> str:
    """How each quantity was predicted, one line each (or why nothing was)."""
    if not prediction["available"]:
        return f"prediction: none ({prediction['note']})"
    lines = [f"prediction of {key}: {how or '-'}" for key, how in prediction["method"].items()]
    if prediction["note"]:
        lines.append(f"prediction: {prediction['note']}")
    return "\n".join(lines)


def mean_field_line(record: dict) -> str:
    """The inputs' q0 and pair correlation c0, and the theory's fixed points and depth scales
    of the hidden layers (where they share one sigma_w2 and sigma_b2)."""
    line = f"inputs: q0={record['q0']:.4g}, c0={record['c0']:.4f}"
    mf = record.get("mean_field")
    if mf:
        line += (
            f"\nmean field (sigma_w2={mf['sigma_w2']:.4g}, sigma_b2={mf['sigma_b2']:.4g}): "
            f"q*={mf['q_star']:.4g}, c*={mf['c_star']:.4f}, chi_1={mf['chi_1']:.4f}, "
            f"xi_q={mf['xi_q']:.3g}, xi_c={mf['xi_c']:.3g} layers"
        )
    return line


def jacobian_line(j: dict) -> str:
    """The Jacobian spectrum's moments, measured (mean over seeds +- standard error) beside the
    prediction (``initlab.propagation.spectrum``; spectrum.png draws it)."""

    def one(key: str) -> str:
        s = j[key]
        measured = "-" if s["measured"] is None else f"{s['measured']:.4g}"
        se = f" +- {s['seed_se']:.2g}" if s.get("seed_se") is not None else ""
        pred = "" if s["predicted"] is None else f" (predicted {s['predicted']:.4g})"
        return f"{key} {measured}{se}{pred}"

    shape = "x".join(map(str, j["shape"]))
    why = f"; no prediction: {j['prediction_note']}" if j.get("prediction_note") else ""
    return (
        f"Jacobian dh_L/dh_1 ({shape}, {j['factors']} factors, {j['inputs']} inputs per seed, "
        f"weights {j['weights']}): {', '.join(one(k) for k in ('m1', 'spread', 's_max'))}{why}"
    )


def validate(cfg: Any, *, torch_free: bool = False) -> None:
    """``initlab.propagation.measure.validate``, its torch-free checks first: a value out of
    range is refused before torch is imported for the checks that need it (an init's keys);
    ``torch_free``: only those (as ``initlab.config.validate``)."""
    validate_propagate(cfg, torch_free=True)
    if torch_free:
        return
    from initlab.propagation.measure import validate as validate_all

    validate_all(cfg)


@hydra.main(version_base="1.3", config_path="../conf", config_name="propagate")
def main(cfg: DictConfig) -> None:
    from initlab.propagation.measure import run_propagation

    hydra_cfg = HydraConfig.get()
    out = Path(hydra_cfg.runtime.output_dir)
    try:
        record = run_propagation(OmegaConf.to_container(cfg, resolve=True))
    except (ConfigError, DataError, ValueError) as exc:  # ValueError: apply_init / build_mlp's
        if hydra_cfg.mode == RunMode.MULTIRUN:  # one bad combination must not end the sweep
            log.error("job %s: %s", hydra_cfg.job.override_dirname, exc)
            return
        print(f"initlab: config error: {exc}", file=sys.stderr)
        sys.exit(2)
    record["output_dir"] = str(out.resolve())
    write_json_atomic(out / PROPAGATION_FILE, record)
    residual = is_residual(record)
    (plot_residual if residual else plot_run)(record, out / PLOT_FILE)
    log.info(
        "init=%s %s, %s inputs (%s), %d seeds\n%s\n%s\n%s",
        record["init"],
        "-".join(map(str, record["widths"])),
        record["inputs"]["kind"],
        record["inputs"]["dataset"],
        len(record["seeds"]),
        prediction_lines(record["prediction"]),
        mean_field_line(record),
        residual_table(record) if residual else table(record),
    )
    if plot_spectrum(record, out / SPECTRUM_PLOT_FILE):
        log.info("%s", jacobian_line(record["jacobian"]))
    elif record.get("jacobian"):
        log.info("Jacobian spectrum: not measured (%s)", record["jacobian"]["note"])
    log.info("wrote %s and %s in %s", PROPAGATION_FILE, PLOT_FILE, out)
    if hydra_cfg.mode == RunMode.MULTIRUN:
        # Redrawn after every job, so the sweep's plot is complete when the last job ends.
        log.info("sweep plot: %s", ", ".join(map(str, plot_dir(hydra_cfg.sweep.dir))))


def plot_command(args: list[str]) -> int:
    if len(args) != 1:
        print("usage: python scripts/propagate.py --plot <sweep or run dir>", file=sys.stderr)
        return 2
    try:
        for path in plot_dir(args[0], lambda line: print(f"initlab: {line}", file=sys.stderr)):
            print(path)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        print(f"initlab: cannot plot {args[0]}: {exc}", file=sys.stderr)
        return 2
    return 0


CONF = Path(__file__).parents[1] / "conf"


def help_text(conf: Path = CONF) -> str:
    """--help: what it does and writes (this docstring), the config groups of conf/propagate.yaml
    with their options, and its own settings (the schema's: ``PropagateSection``).
    conf/hydra/default.yaml's help is train.py's."""
    primary = OmegaConf.load(conf / "propagate.yaml")
    defaults = primary.get("defaults", [])
    own = ", ".join(f"propagate.{f.name}" for f in fields(PropagateSection))
    groups = [
        next(iter(d))
        for d in defaults
        if OmegaConf.is_dict(d) and not next(iter(d)).startswith("hydra")
    ]
    lines = [
        f"{g}: {', '.join(sorted(p.stem for p in (conf / g).glob('*.yaml')))}"
        for g in groups
        if (conf / g).is_dir()
    ]
    return "\n".join(
        [
            (__doc__ or "").strip(),
            "",
            "== Config groups (group=option) ==",
            *lines,
            "",
            f"Its own settings: {own} (initlab.config.PropagateSection); all of them with their "
            "values:",
            "python scripts/propagate.py --cfg job",
            "More: README.md; python train.py --hydra-help (Hydra's flags, the launchers).",
        ]
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--plot":
        sys.exit(plot_command(sys.argv[2:]))
    if any(a in ("-h", "--help") for a in sys.argv[1:]):
        print(help_text())
        sys.exit(0)
    # bad input: one line and exit 2 before Hydra writes anything
    conf = CONF
    preflight(sys.argv[1:], conf, "propagate", validate_fn=validate, runs=False)
    main()
