"""The package list, derived from the tree (pyproject.toml holds everything else).

The repository keeps the design card's top-level folders (``plugin/``, ``driver/``, ``ipam/``, ...), but
installed they are one import package, ``pynet``: ``plugin/`` becomes ``pynet.plugin``, ``driver/kernel/``
becomes ``pynet.driver.kernel``, and ``pynet/`` itself holds the pieces every layer shares.  Nothing takes
a generic top-level name (``plugin``, ``store``, ``common``...) in site-packages.

A component is every top-level folder with an ``__init__.py`` except the ones that are not product
(``NOT_SHIPPED``); its subpackages and the data files beside its modules are found, never listed, so a
new subpackage cannot be forgotten.  ``python setup.py sources`` prints every file the wheel is built
from (plugin/build/build.sh keys its cache on them); tests/unit/test_packaging.py checks the result.
"""

from __future__ import annotations

import sys
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
ROOT_PACKAGE = "pynet"
NOT_SHIPPED = {"tests", "bench"}  # test tiers and the benchmark run from the repository, never installed


def components() -> list[str]:
    return sorted(p.name for p in ROOT.iterdir()
                  if (p / "__init__.py").is_file() and p.name not in NOT_SHIPPED | {ROOT_PACKAGE})


def layout() -> tuple[list[str], dict[str, str], dict[str, list[str]]]:
    """(packages, package_dir, package_data) for every component under ``pynet``."""
    packages, package_dir = [ROOT_PACKAGE], {ROOT_PACKAGE: ROOT_PACKAGE}
    for name in components():
        package_dir[f"{ROOT_PACKAGE}.{name}"] = name
        packages.append(f"{ROOT_PACKAGE}.{name}")
        packages += [f"{ROOT_PACKAGE}.{name}.{sub}" for sub in find_packages(where=str(ROOT / name))]
    package_data = {}
    for package in packages:
        folder = ROOT / _folder(package, package_dir)
        data = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix not in (".py", ".pyc"))
        if data:
            package_data[package] = data
    return packages, package_dir, package_data


def _folder(package: str, package_dir: dict[str, str]) -> str:
    top, _, rest = package.partition(".")
    head, _, tail = rest.partition(".")
    base = package_dir[f"{top}.{head}"] if head else package_dir[top]
    return str(Path(base, *tail.split("."))) if tail else base


def sources() -> list[str]:
    packages, package_dir, package_data = layout()
    files = ["pyproject.toml", "setup.py", "README.md"]
    for package in packages:
        folder = Path(_folder(package, package_dir))
        files += sorted(str(p) for p in (ROOT / folder).glob("*.py"))
        files += [str(ROOT / folder / name) for name in package_data.get(package, ())]
    return [str(Path(f).resolve().relative_to(ROOT)) for f in files]


if __name__ == "__main__" and sys.argv[1:] == ["sources"]:
    print("\n".join(sources()))
    sys.exit(0)

_packages, _package_dir, _package_data = layout()
setup(packages=_packages, package_dir=_package_dir, package_data=_package_data)
