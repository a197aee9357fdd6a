"""``initlab.apphelp``: train.py's bare ``--help`` computed from the config files is the page
Hydra prints, on this project's conf and on generated conf trees."""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
import tempfile
from pathlib import Path

import hydra
import pytest
import yaml
from hydra.core.global_hydra import GlobalHydra
from hypothesis import given, settings
from hypothesis import strategies as st

from initlab.apphelp import app_help

from .conftest import ROOT
from .test_terminal import TRAIN, _python

CONF = ROOT / "conf"


def hydra_page(config_dir: Path, config_name: str) -> str:
    """What Hydra itself prints for ``--help`` of this config (its app_help, composing)."""

    @hydra.main(version_base="1.3", config_path=str(config_dir), config_name=config_name)
    def app(cfg: object) -> None:
        raise AssertionError("--help runs no job")

    argv, sys.argv = sys.argv, ["app.py", "--help"]
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as stop:
            app()
    finally:
        sys.argv = argv
        GlobalHydra.instance().clear()
    assert stop.value.code in (0, None)
    return out.getvalue()


def test_train_help_is_hydras_page():
    page = app_help(CONF, "train")
    assert page is not None and "== Config groups (group=option) ==" in page
    assert page + "\n" == hydra_page(CONF, "train")


def test_train_py_prints_it(tmp_path):
    for flag in ("--help", "-h"):
        proc = _python([str(TRAIN), flag], tmp_path)
        assert proc.returncode == 0 and not proc.stderr, proc.stderr[-2000:]
        assert proc.stdout == app_help(CONF, "train") + "\n"


# -- generated conf trees: groups nested or not, options of any name Hydra takes -----------------
NAME = st.text("abcxyz_0", min_size=1, max_size=4)
OPTION = st.one_of(NAME, st.builds("{}.{}".format, NAME, NAME))  # "a.b.yaml": Hydra says "a.b"
GROUP = st.lists(NAME, min_size=1, max_size=3).map("/".join)
TREE = st.dictionaries(GROUP, st.lists(OPTION, max_size=4), max_size=6)
TEMPLATE = st.sampled_from(
    [
        "Groups:\n$APP_CONFIG_GROUPS\nend",
        "== $$5 a price ==\n$APP_CONFIG_GROUPS.",
        "no groups here",
        "$APP_CONFIG_GROUPS",
    ]
)


def _write_tree(root: Path, tree: dict[str, list[str]], template: str, extra: list[str]) -> None:
    (root / "hydra").mkdir(parents=True)
    (root / "hydra" / "default.yaml").write_text(yaml.safe_dump({"help": {"template": template}}))
    (root / "app.yaml").write_text(yaml.safe_dump({"defaults": ["_self_", {"hydra": "default"}]}))
    for group, options in tree.items():
        (root / group).mkdir(parents=True, exist_ok=True)
        for option in options:
            (root / group / f"{option}.yaml").write_text("x: 1\n")
    for folder in [root, *(root / group for group in tree)]:
        for name in extra:  # not configs: Hydra lists none of them
            (folder / name).write_text("not a config\n")


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(TREE, TEMPLATE, st.lists(st.sampled_from(["notes.txt", "README", "a.yml"]), max_size=2))
def test_generated_confs_give_hydras_page(tree, template, extra):
    root = Path(tempfile.mkdtemp(prefix="apphelp-"))
    try:
        _write_tree(root, tree, template, extra)
        page = app_help(root, "app")
        assert page is not None  # every template here needs only the groups
        assert page + "\n" == hydra_page(root, "app")
    finally:
        shutil.rmtree(root)


@pytest.mark.parametrize(
    ("primary", "template"),
    [
        ({"defaults": ["_self_", {"hydra": "default"}]}, "$FLAGS_HELP"),  # Hydra's flags
        ({"defaults": ["_self_", {"hydra": "default"}]}, "$CONFIG"),  # the composed config
        ({"defaults": ["_self_", {"hydra": "default"}]}, "${hydra.job.name}"),
        ({"defaults": ["_self_"]}, "$APP_CONFIG_GROUPS"),  # Hydra's own help template
        ({"defaults": [{"hydra": "default"}], "hydra": {"help": {"template": "x"}}}, "y"),
        ({"defaults": [{"hydra": "default"}, {"override hydra/help": "x"}]}, "y"),
    ],
)
def test_what_only_hydra_can_tell_is_left_to_it(tmp_path, primary, template):
    (tmp_path / "hydra").mkdir()
    (tmp_path / "hydra" / "default.yaml").write_text(
        yaml.safe_dump({"help": {"template": template}})
    )
    (tmp_path / "app.yaml").write_text(yaml.safe_dump(primary))
    assert app_help(tmp_path, "app") is None
