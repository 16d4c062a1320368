"""The package (pyproject.toml): the console commands resolve, the Hydra configs are found from any
working directory, both in this checkout and in a built wheel, and the pins agree with
requirements.txt."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import yaml

from harl.config import CONF_DIR, ConfigError, find_conf_dir

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
COMMANDS = {
    "harl-train": "harl.train:main",
    "harl-evaluate": "harl.evaluate:main",
    "harl-plot": "harl.plot:main",
    "harl-reproduce": "harl.reproduce.cli:main",
}
# a console script started as `harl-train --cfg job env=mpe`: the entry point's function called from
# a plain `__main__` script, as the wrapper pip writes does
AS_CONSOLE_SCRIPT = """\
import sys
from importlib.metadata import EntryPoint
sys.argv = ["harl-train", "--cfg", "job", "env=mpe", "algo=hatd3"]
sys.exit(EntryPoint("harl-train", {value!r}, "console_scripts").load()())
"""


def python(args: list[str], cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def composed(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return yaml.safe_load(proc.stdout)


def requirement_pins(lines: list[str]) -> dict[str, str]:
    """{normalised name: version} of `name==version` lines (extras dropped)."""
    pins = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if not line or line.startswith("-"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^\s;]+)", line)
        assert match, f"not an exact pin: {line!r}"
        pins[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[3]
    return pins


def test_console_commands_are_declared_and_callable():
    assert PYPROJECT["project"]["scripts"] == COMMANDS
    for name, value in COMMANDS.items():
        function = EntryPoint(name, value, "console_scripts").load()
        assert callable(function), name


def test_declared_packages_are_the_source_packages():
    """A new sub-package must be listed in pyproject.toml, or `pip install .` leaves it out."""
    declared = set(PYPROJECT["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(REPO).parts)
        for top in ("harl", "envs", "runners")
        for init in (REPO / top).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert declared == on_disk | {"harl.conf"}
    assert PYPROJECT["tool"]["setuptools"]["package-dir"] == {"harl.conf": "conf"}


def test_pins_agree_with_requirements_txt():
    """requirements.txt = the package's dependencies + its dev and docs extras, at the same versions."""
    project = PYPROJECT["project"]
    extras = project["optional-dependencies"]
    in_pyproject = requirement_pins(project["dependencies"] + extras["dev"] + extras["docs"])
    in_requirements = requirement_pins((REPO / "requirements.txt").read_text().splitlines())
    assert in_requirements == in_pyproject


def test_checkout_uses_the_repository_conf():
    assert Path(CONF_DIR) == REPO / "conf"
    assert not (REPO / "harl" / "conf").exists(), "harl/conf would hide the repository's conf/"


def test_find_conf_dir_prefers_the_packaged_copy(tmp_path):
    package = tmp_path / "site" / "harl"
    (package / "conf").mkdir(parents=True)
    with pytest.raises(ConfigError, match="reinstall harl"):
        find_conf_dir(package)  # a conf/ without config.yaml does not count
    (tmp_path / "site" / "conf").mkdir()
    (tmp_path / "site" / "conf" / "config.yaml").write_text("{}\n")
    assert find_conf_dir(package) == tmp_path / "site" / "conf"  # a checkout's layout
    (package / "conf" / "config.yaml").write_text("{}\n")
    assert find_conf_dir(package) == package / "conf"  # an installed harl's own copy wins


@pytest.mark.parametrize("how", ["python -m harl.train", "harl-train"])
def test_train_finds_its_configs_from_another_directory(tmp_path, how):
    """From a directory with no conf/, both ways of starting training compose the full config."""
    if how == "harl-train":
        proc = python(["-c", AS_CONSOLE_SCRIPT.format(value=COMMANDS["harl-train"])], tmp_path, REPO)
    else:
        proc = python(["-m", "harl.train", "--cfg", "job", "env=mpe", "algo=hatd3"], tmp_path, REPO)
    cfg = composed(proc)
    assert (cfg["algo"]["name"], cfg["env"]["name"], cfg["env"]["scenario"]) == (
        "hatd3",
        "mpe",
        "simple_spread",
    )
    assert not any(tmp_path.iterdir()), "printing the config wrote into the working directory"


def test_built_wheel_ships_the_configs_and_commands(tmp_path):
    """Build a wheel from a copy of the sources, unpack it as an installed harl (no checkout on the
    path) and start training's config composition from elsewhere through the console entry point."""
    src = tmp_path / "src"
    for top in ("harl", "envs", "runners", "conf"):
        shutil.copytree(REPO / top, src / top, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            str(src),
            "-w",
            str(tmp_path / "dist"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = (tmp_path / "dist").glob("harl-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(site)
    conf_files = {
        f"harl/conf/{p.relative_to(REPO / 'conf').as_posix()}"
        for p in (REPO / "conf").rglob("*")
        if p.suffix in (".yaml", ".md")
    }
    assert conf_files and conf_files <= names
    scripts = (
        site / f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info" / "entry_points.txt"
    ).read_text()
    for name, value in COMMANDS.items():
        assert f"{name} = {value}" in scripts

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = python(["-c", "import harl.config as c; print(c.__file__); print(c.CONF_DIR)"], elsewhere, site)
    assert where.returncode == 0, where.stderr
    module_file, conf_dir = where.stdout.split()
    assert Path(module_file).is_relative_to(site) and Path(conf_dir) == site / "harl" / "conf"
    cfg = composed(python(["-c", AS_CONSOLE_SCRIPT.format(value=COMMANDS["harl-train"])], elsewhere, site))
    assert (cfg["algo"]["name"], cfg["env"]["name"]) == ("hatd3", "mpe")
    preset = composed(
        python(
            ["-m", "harl.train", "--cfg", "job", "+experiment=mpe/simple_spread_discrete/happo"],
            elsewhere,
            site,
        )
    )
    assert preset["env"]["continuous"] is False
    suites = {f"harl/reproduce/suites/{p.name}" for p in (REPO / "harl/reproduce/suites").glob("*.yaml")}
    assert suites and suites <= names
    listing = python(["-m", "harl.reproduce", "--list"], elsewhere, site)
    assert listing.returncode == 0 and "halfcheetah_2x3/happo" in listing.stdout, listing.stderr
