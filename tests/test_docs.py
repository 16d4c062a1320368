"""The documentation site's generated configuration reference (docs/hooks/config_reference.py).

The hook runs at `mkdocs build` time; these tests run its generator without MkDocs and check
that the page it writes documents every key of every schema harl.config registers.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from harl.config import ALGO_SCHEMAS, ENV_SCHEMAS, LoggerConfig, TrainConfig, compose_config
from harl.config_checks import CHOICES, RANGES

ROOT = Path(__file__).resolve().parents[1]
HOOK = ROOT / "docs" / "hooks" / "config_reference.py"


def _load_hook():
    spec = importlib.util.spec_from_file_location("config_reference", HOOK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


hook = _load_hook()
SCHEMAS = [TrainConfig, LoggerConfig, *ALGO_SCHEMAS.values(), *ENV_SCHEMAS.values()]


@pytest.fixture(scope="module")
def sections():
    return hook.collect()


@pytest.fixture(scope="module")
def rendered(sections):
    return hook.render(sections)


def _by_class(sections):
    return {s.cls: s for s in sections}


def _covered(section, by_class) -> set[str]:
    """Field names documented for a schema: its own rows and, through `bases`, its ancestors'."""
    names = {row.name for row in section.rows}
    for base in section.bases:
        names |= _covered(by_class[base], by_class)
    return names


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda c: c.__name__)
def test_every_field_of_every_schema_has_a_row(sections, schema):
    by_class = _by_class(sections)
    assert schema in by_class, f"{schema.__name__} has no section"
    expected = {f.name for f in dataclasses.fields(schema)}
    assert _covered(by_class[schema], by_class) == expected


def test_each_row_is_in_its_own_section_of_the_page(sections, rendered):
    chunks = re.split(r"^### ", rendered, flags=re.M)[1:]
    by_title = {chunk.split("`")[1]: chunk for chunk in chunks if "hydra/launcher=" not in chunk[:40]}
    assert set(by_title) == {s.cls.__name__ for s in sections}
    for section in sections:
        chunk = by_title[section.cls.__name__]
        for row in section.rows:
            assert f"<td><code>{row.key}</code></td>" in chunk, (section.cls.__name__, row.key)


def test_registered_names_and_groups(sections):
    by_class = _by_class(sections)
    for group, table in (("algo", ALGO_SCHEMAS), ("env", ENV_SCHEMAS)):
        for name, cls in table.items():
            assert name in by_class[cls].registered_as
            assert all(row.key.startswith(f"{group}.") for row in by_class[cls].rows)
    assert [r.key for r in by_class[LoggerConfig].rows][0] == "logger.tensorboard"


def test_every_row_is_described(sections):
    """A key is described by its own comment in harl/config.py or by the note above its run."""
    bare = [row.key for s in sections for row in s.rows if not (row.doc or row.note)]
    assert bare == [], f"fields of harl/config.py without a comment: {bare}"


def test_checked_keys_show_their_valid_values(sections):
    rows = [row for s in sections for row in s.rows]
    for row in rows:
        if row.key in RANGES:
            assert row.valid == RANGES[row.key].describe(), row.key
        elif row.key in CHOICES:
            assert all(f"`{c}`" in row.valid for c in CHOICES[row.key]), row.key
    top = {row.name: row for row in rows if row.key in ("algo", "env")}
    assert all(f"`{n}`" in top["algo"].valid for n in ALGO_SCHEMAS)
    assert all(f"`{n}`" in top["env"].valid for n in ENV_SCHEMAS)


def test_defaults_are_the_schema_defaults(sections):
    by_class = _by_class(sections)
    rows = {row.name: row for row in by_class[TrainConfig].rows}
    assert rows["total_steps"].default == f"`{TrainConfig.total_steps}`"
    assert rows["algo"].default.startswith("`happo`") and rows["env"].default.startswith("`mamujoco`")
    hasac = {row.name: row for row in by_class[ALGO_SCHEMAS["hasac"]].rows}
    assert hasac["hidden_sizes"].default == "`[256, 256]`"
    assert "overrides the `OffPolicyConfig` default, `[128, 128]`" in hasac["hidden_sizes"].doc


@pytest.mark.parametrize("group,table", [("algo", ALGO_SCHEMAS), ("env", ENV_SCHEMAS)])
def test_conf_files_keep_the_schema_defaults(group, table):
    """The reference shows schema defaults: conf/<group>/<name>.yaml must not change them."""
    for name, cls in table.items():
        composed = compose_config(f"{group}={name}")[group]
        assert OmegaConf.to_container(composed) == OmegaConf.to_container(OmegaConf.structured(cls())), name


def _flat_keys(tree: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in tree.items():
        if isinstance(value, dict):
            keys |= _flat_keys(value, f"{prefix}{key}.")
        else:
            keys.add(f"{prefix}{key}")
    return keys


def test_every_launcher_key_has_a_row(rendered):
    launchers = hook.collect_launchers()
    files = sorted((ROOT / "conf" / "hydra" / "launcher").glob("*.yaml"))
    assert [s.name for s in launchers] == [f.stem for f in files] and files
    for section, path in zip(launchers, files):
        data = yaml.safe_load(path.read_text())
        data.pop("defaults", None)
        assert {row.key for row in section.rows} == {f"hydra.launcher.{k}" for k in _flat_keys(data)}
        assert all(row.doc or row.note for row in section.rows), path
        assert f"### `hydra/launcher={section.name}`" in rendered
        for row in section.rows:
            assert f"<td><code>{row.key}</code></td>" in rendered


def test_comment_rules():
    source = '''
class A:
    """Doc."""

    # networks
    width: int = 3             # layer width
    depth: int = 2
    # a long note about
    # the next field
    mode: str = "x"            # a (long comment
    # that continues) here
    other: int = 1

    alone: int = 0
'''
    fields = hook._class_fields(source)["A"]
    assert fields["width"].trailing == "layer width" and fields["width"].note == "networks"
    assert fields["depth"].trailing == "" and fields["depth"].group_note == "networks"
    assert fields["mode"].note == "a long note about the next field"
    assert fields["mode"].trailing == "a (long comment that continues) here"
    assert fields["other"].note == "" and fields["other"].group_note == "a long note about the next field"
    assert fields["alone"].group_note == ""


def test_page_and_site_config_use_the_hook():
    assert hook.MARKER in (ROOT / "docs" / "configuration.md").read_text()
    site = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert "docs/hooks/config_reference.py" in site["hooks"]
