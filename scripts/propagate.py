"""Signal propagation at init: per-layer moments measured beside their mean-field predictions.

    python scripts/propagate.py                                   # the tutorial's net, He, MNIST
    python scripts/propagate.py init=xavier propagate.inputs=gaussian
    python scripts/propagate.py -m init=he,xavier model.depth=2,10,20 model.width=256
    python scripts/propagate.py --plot outputs/propagation-multirun/<date>/<time>

Each run writes propagation.json and propagation.png into its Hydra run directory; a sweep also
keeps <sweep dir>/propagation_sweep.png up to date (one panel per network, one colour per init),
which --plot <dir> redraws from every propagation.json below <dir>. A thin Hydra edge over
initlab.propagation, which does the work without Hydra.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from initlab.cli import preflight
from initlab.config import ConfigError
from initlab.errors import DataError
from initlab.propagation import PLOT_FILE, PROPAGATION_FILE, SWEEP_PLOT_FILE
from initlab.propagation.measure import run_propagation, validate
from initlab.propagation.plots import (
    find_propagation,
    plot_run,
    plot_sweep,
    read_propagation,
    table,
)
from initlab.results import write_json_atomic

log = logging.getLogger("initlab.propagate")


def plot_dir(directory: str | Path, warn: Callable[[str], Any] = log.warning) -> Path:
    """Draw <directory>/propagation_sweep.png from every propagation.json below it; one that
    cannot be drawn (not a regular file, not strict JSON, not a propagation record) is skipped
    with one line to ``warn``. FileNotFoundError when none can be drawn."""
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
    return plot_sweep(records, Path(directory) / SWEEP_PLOT_FILE)


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


@hydra.main(version_base="1.3", config_path="../conf", config_name="propagate")
def main(cfg: DictConfig) -> None:
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
    plot_run(record, out / PLOT_FILE)
    log.info(
        "init=%s %s, %s inputs (%s), %d seeds\n%s\n%s\n%s",
        record["init"],
        "-".join(map(str, record["widths"])),
        record["inputs"]["kind"],
        record["inputs"]["dataset"],
        len(record["seeds"]),
        prediction_lines(record["prediction"]),
        mean_field_line(record),
        table(record),
    )
    log.info("wrote %s and %s in %s", PROPAGATION_FILE, PLOT_FILE, out)
    if hydra_cfg.mode == RunMode.MULTIRUN:
        # Redrawn after every job, so the sweep's plot is complete when the last job ends.
        log.info("sweep plot: %s", plot_dir(hydra_cfg.sweep.dir))


def plot_command(args: list[str]) -> int:
    if len(args) != 1:
        print("usage: python scripts/propagate.py --plot <sweep or run dir>", file=sys.stderr)
        return 2
    try:
        print(plot_dir(args[0], lambda line: print(f"initlab: {line}", file=sys.stderr)))
    except (FileNotFoundError, ValueError, KeyError) as exc:
        print(f"initlab: cannot plot {args[0]}: {exc}", file=sys.stderr)
        return 2
    return 0


CONF = Path(__file__).parents[1] / "conf"


def help_text(conf: Path = CONF) -> str:
    """--help: what it does and writes (this docstring), the config groups of conf/propagate.yaml
    with their options, and its own settings. conf/hydra/default.yaml's help is train.py's."""
    primary = OmegaConf.load(conf / "propagate.yaml")
    defaults = primary.get("defaults", [])
    own = ", ".join(f"propagate.{k}" for k in primary.get("propagate", {}))
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
            f"Its own settings: {own} (conf/propagate.yaml); all of them with their values:",
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
