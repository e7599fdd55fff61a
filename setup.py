"""Packages of the distribution (everything else is in pyproject.toml).

The repository's ``fixtures/`` folder is installed as the package ``conformance_fixtures``: a
top-level ``fixtures`` package would shadow testing-cabal's ``fixtures`` distribution in a
user's environment. Every sub-package of ``fixtures/`` is found here, so a new vendor folder
needs no packaging change.
"""

from setuptools import find_packages, setup

fixtures = find_packages(include=["fixtures", "fixtures.*"])
setup(
    packages=[
        *find_packages(include=["simulators", "simulators.*", "conformance", "conformance.*"]),
        *("conformance_fixtures" + name.removeprefix("fixtures") for name in fixtures),
    ],
    package_dir={"conformance_fixtures": "fixtures"},
)
