"""Packaging: the wheel ships every module of the tree under one import package, ``pynet``, and works
installed in a fresh venv (no editable finder, no repository on the path)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GENERIC = {"plugin", "driver", "ipam", "store", "common", "cluster", "lab", "tests", "bench"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Built as plugin/build/build.sh builds it: from a copy of the files setup.py says it ships (a build
    in the repository would reuse its build/, where modules of an older tree linger)."""
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("wheel")
    listed = subprocess.run([sys.executable, "setup.py", "sources"], cwd=REPO, capture_output=True, text=True,
                            check=True, timeout=60).stdout.split()
    for name in listed:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir", str(out), str(src)],
                   check=True, timeout=300, cwd=out)
    (found,) = out.glob("pynet_plugin-*.whl")
    return found


def _shipped_tree() -> set[str]:
    """Every module and data file of the component folders, as the wheel should name it."""
    names = {f"pynet/{p.relative_to(REPO / 'pynet')}" for p in (REPO / "pynet").glob("*.py")}
    for folder in ("plugin", "driver", "ipam", "store", "cluster", "clusterdns", "lab"):
        for p in (REPO / folder).rglob("*"):
            package = p.parent
            if p.is_file() and "__pycache__" not in p.parts and (package / "__init__.py").exists() \
                    and p.suffix != ".pyc":
                names.add(f"pynet/{p.relative_to(REPO)}")
    return names


def test_the_wheel_has_one_top_level_package_and_every_module(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    top = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert top == {"pynet"}
    assert not top & GENERIC
    shipped = {n for n in names if n.startswith("pynet/")}
    assert shipped == _shipped_tree()  # a new subpackage or module cannot be forgotten
    assert "pynet/lab/netns-dockerd.sh" in shipped and not any("/tests/" in n or "/build/" in n for n in names)


def test_the_wheel_installs_in_a_fresh_venv_imports_and_runs(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], check=True, timeout=600, cwd=tmp_path)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    tops = {p.name for p in Path(site).iterdir()}
    assert "pynet" in tops and not tops & GENERIC, sorted(tops & GENERIC)
    modules = sorted(n[:-3].replace("/", ".").removesuffix(".__init__") for n in zipfile.ZipFile(wheel).namelist()
                     if n.endswith(".py"))
    check = ("import importlib, pynet, sys\n"
             "assert pynet.__file__.startswith(sys.argv[1]), pynet.__file__\n"
             "for m in sys.argv[2:]: importlib.import_module(m)\n")
    subprocess.run([str(python), "-c", check, site, *modules], check=True, timeout=120, cwd=tmp_path)
    helped = subprocess.run([str(env_dir / "bin" / "pynet"), "--help"], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert helped.returncode == 0 and "serve" in helped.stdout and "ports" in helped.stdout, helped.stderr
