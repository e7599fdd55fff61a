"""Packages of the distribution (everything else is in pyproject.toml).

The repository's ``fixtures/`` folder is installed as the package ``conformance_fixtures``: a
top-level ``fixtures`` package would shadow testing-cabal's ``fixtures`` distribution in a
user's environment. Every sub-package of ``fixtures/`` is found here, so a new vendor folder
needs no packaging change.

Folders of data files only (``conformance/templates``, ``fixtures/<vendor>/broken``, …) have no
``__init__.py``, but Python imports them as namespace packages, and setuptools warns ("Package
would be ignored") about every such folder that ships files without being listed. So packages
are found as namespace packages (setuptools never lists ``__pycache__``): every folder is listed,
and the ``package-data`` globs in pyproject.toml say which of its files ship.
"""

from setuptools import find_namespace_packages, setup

fixtures = find_namespace_packages(include=["fixtures", "fixtures.*"])
setup(
    packages=[
        *find_namespace_packages(
            include=["simulators", "simulators.*", "conformance", "conformance.*"]
        ),
        *("conformance_fixtures" + name.removeprefix("fixtures") for name in fixtures),
    ],
    package_dir={"conformance_fixtures": "fixtures"},
)
