"""``python train.py --help`` without composing: Hydra's page, from the config files themselves.

Hydra answers ``--help`` by composing the whole config and listing each group's options through
its config repository, which it deep-copies once per group (about 0.6 s of train.py's 0.9 s).
The page it prints is a fixed function of two files' worth of facts: the help template of the
primary config's ``hydra`` option, and the config groups on disk. ``app_help`` computes it from
them, and gives up (None: let Hydra answer) whenever the page could depend on anything else: a
template that names Hydra's flags, its groups or the composed config, an interpolation, a
primary config that changes Hydra's search path or sets the help itself.
``tests/test_apphelp.py`` checks that the text equals Hydra's, on this project's conf and on
generated ones.
"""

from __future__ import annotations

import os
import string
from pathlib import Path
from typing import Any

import yaml

# The one placeholder of Hydra's help template that needs no composition.
GROUPS = "APP_CONFIG_GROUPS"


def app_help(config_dir: str | Path, config_name: str) -> str | None:
    """The text Hydra prints for a bare ``--help`` of ``config_name`` in ``config_dir``; None
    when only Hydra can tell (see the module's docstring)."""
    config_dir = Path(config_dir)
    primary = _load(config_dir / f"{config_name}.yaml")
    if primary is None or not _keeps_hydra_help(primary.get("hydra")):
        return None
    entries = [k for d in primary.get("defaults") or [] if isinstance(d, dict) for k in d]
    if any("hydra/" in str(k) for k in entries):  # an override of hydra/help, say
        return None
    hydra_option = next((d["hydra"] for d in primary["defaults"] if "hydra" in d), None)
    if not isinstance(hydra_option, str):
        return None  # Hydra's own help template: its flags and the composed config
    settings = _load(config_dir / "hydra" / f"{hydra_option}.yaml")
    if settings is None or "defaults" in settings or "searchpath" in settings:
        return None
    template = (settings.get("help") or {}).get("template")
    if not isinstance(template, str) or "${" in template:
        return None
    page = string.Template(template)
    if not page.is_valid() or set(page.get_identifiers()) - {GROUPS}:
        return None
    return page.substitute({GROUPS: config_groups(config_dir)})


def config_groups(config_dir: str | Path) -> str:
    """Hydra's ``$APP_CONFIG_GROUPS``: each group with options (nested ones as ``a/b``), sorted,
    as ``group: option, option`` lines; Hydra's own (``hydra``, ``hydra/...``) left out."""
    lines = []
    for group in sorted(_groups(Path(config_dir), "")):
        if group == "hydra" or group.startswith("hydra/"):
            continue
        lines.append(f"{group}: {', '.join(_options(Path(config_dir) / group))}\n")
    return "".join(lines)


def _groups(root: Path, parent: str) -> list[str]:
    """The groups under ``parent`` that hold configs, depth first (Hydra lists a folder with no
    config of its own only through its subfolders)."""
    found = []
    for name in _subfolders(root / parent):
        group = f"{parent}/{name}" if parent else name
        if _options(root / group):
            found.append(group)
        found.extend(_groups(root, group))
    return found


def _subfolders(folder: Path) -> list[str]:
    skip = ("__pycache__", "__init__.py")
    return [n for n in os.listdir(folder) if n not in skip and (folder / n).is_dir()]


def _options(folder: Path) -> list[str]:
    """A group's options as Hydra names them: a name that is, or with ``.yaml`` added names, a
    file, cut at its last dot."""
    options = set()
    for name in os.listdir(folder):
        if name in ("__pycache__", "__init__.py"):
            continue
        as_file = name if name.endswith(".yaml") else f"{name}.yaml"
        if (folder / as_file).resolve().is_file():
            options.add(name[: name.rfind(".")] if "." in name else name)
    return sorted(options)


def _keeps_hydra_help(section: Any) -> bool:
    """A primary config's ``hydra:`` section leaves the help and the search path as they are."""
    return section is None or (
        isinstance(section, dict) and "help" not in section and "searchpath" not in section
    )


def _load(path: Path) -> dict[str, Any] | None:
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return loaded if isinstance(loaded, dict) else None
