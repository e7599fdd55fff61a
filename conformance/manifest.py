"""The SUT manifest (shared/spec/sut-contract.md §2): parsing, with one clear error per problem.

Strings may use ``${VAR}`` or ``${VAR:-default}``: values come from the environment, plus
``${PYTHON}`` (the interpreter running pytest) and ``${MANIFEST_DIR}``. Relative paths are taken
from the manifest's folder. Every error names the file and the key and says how to fix it.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["ManifestError", "SutManifest", "load_manifest", "manifest_for_url"]


class ManifestError(Exception):
    """A manifest (or --sut option) problem, worded for the user."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _https_or_http(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s)://host[:port]/path URL")
    return url


class ProcessSection(_Section):
    command: list[str] = Field(min_length=1)
    cwd: Path = Path(".")
    env: dict[str, str] = {}
    ready: str | None = None
    ready_timeout_s: float = Field(default=30.0, gt=0, le=600)

    @field_validator("ready")
    @classmethod
    def _ready_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme == "tcp":
            if not parts.hostname or not parts.port:
                raise ValueError(f"{value!r}: a tcp readiness probe is tcp://host:port")
            return value
        return _https_or_http(value)


class AppleSection(_Section):
    webhook_url: str
    auth_token: str = Field(min_length=1)
    tls_ca: Path | None = None
    api_client: bool = False

    _url = field_validator("webhook_url")(_https_or_http)


class PelionSection(_Section):
    channel: Literal["callback", "websocket"] = "callback"
    callback_url: str | None = None
    callback_headers: dict[str, str] = {}
    registers_itself: bool = False
    tls_ca: Path | None = None


class IvantiSection(_Section):
    consumes: list[str] | None = None
    topic_style: Literal["neurons", "epmm"] = "neurons"


class SutManifest(_Section):
    name: str = "sut"
    process: ProcessSection | None = None
    apple: AppleSection | None = None
    pelion: PelionSection | None = None
    ivanti: IvantiSection | None = None
    source: str = ""  # where it came from (manifest path or URL); not a manifest key

    def vendors(self) -> list[str]:
        """The profiles the SUT claims (a section present = the profile is claimed)."""
        return [v for v in ("ivanti", "apple", "pelion") if getattr(self, v) is not None]


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(value: Any, where: str, variables: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}.{k}", variables) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, where, variables) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in variables:
            return variables[name]
        if default is not None:
            return default
        raise ManifestError(
            f"{where} uses ${{{name}}}, which is not set: export {name}, "
            f"or write ${{{name}:-default}}"
        )

    return _VAR.sub(substitute, value)


def load_manifest(path: Path) -> SutManifest:
    """Read and check a manifest; raise :class:`ManifestError` naming the file and key."""
    if not path.is_file():
        raise ManifestError(f"--sut={path}: no such file (give a manifest path or an https:// URL)")
    try:
        raw = tomllib.loads(path.read_text("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: not valid TOML: {exc}") from None
    folder = path.resolve().parent
    variables = {**os.environ, "PYTHON": sys.executable, "MANIFEST_DIR": str(folder)}
    raw = {k: _expand(v, f"{path}: {k}", variables) for k, v in raw.items()}
    if "source" in raw:
        raise ManifestError(f"{path}: unknown key 'source' (it is not a manifest key)")
    try:
        manifest = SutManifest.model_validate({**raw, "source": str(path)})
    except ValidationError as exc:
        raise ManifestError(_describe(path, exc)) from None
    if not manifest.vendors():
        raise ManifestError(
            f"{path}: declares no profile: add an [apple], [pelion] or [ivanti] section"
        )
    return _resolve_paths(manifest, folder, path)


def _describe(path: Path, exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        section = f"[{loc[0]}] " if len(loc) > 1 else ""
        key = ".".join(loc[1:]) if len(loc) > 1 else (loc[0] if loc else "?")
        if error["type"] == "extra_forbidden":
            what = "unknown key (check its spelling against the SUT contract)"
        elif error["type"] == "missing":
            what = "missing required key"
        else:
            what = error["msg"]
        lines.append(f"{path}: {section}{key}: {what}")
    return "\n".join(lines)


def _resolve_paths(manifest: SutManifest, folder: Path, path: Path) -> SutManifest:
    updates: dict[str, Any] = {}
    if manifest.process is not None:
        cwd = (folder / manifest.process.cwd).resolve()
        if not cwd.is_dir():
            raise ManifestError(f"{path}: [process] cwd: {cwd} is not a folder")
        updates["process"] = manifest.process.model_copy(update={"cwd": cwd})
    for vendor in ("apple", "pelion"):
        section = getattr(manifest, vendor)
        if section is not None and section.tls_ca is not None:
            ca = (folder / section.tls_ca).resolve()
            if not ca.is_file():
                raise ManifestError(
                    f"{path}: [{vendor}] tls_ca: {ca} does not exist (the PEM of the CA that "
                    "signed the SUT's server certificate)"
                )
            updates[vendor] = section.model_copy(update={"tls_ca": ca})
    return manifest.model_copy(update=updates)


def manifest_for_url(url: str, vendor: str, *, token: str | None, ca: Path | None) -> SutManifest:
    """The manifest equivalent of ``--sut=URL --sut-token=… --sut-ca=…`` for one receiver."""
    if ca is not None and not ca.is_file():
        raise ManifestError(f"--sut-ca={ca}: no such file (the PEM of the CA that signed the SUT)")
    try:
        _https_or_http(url)
    except ValueError as exc:
        raise ManifestError(f"--sut={url}: {exc}") from None
    if vendor != "apple":
        raise ManifestError(
            f"--sut=URL checks Apple receivers for now; describe a {vendor} SUT in a manifest"
        )
    if not token:
        raise ManifestError(
            "--sut=URL for Apple needs --sut-token=TOKEN (the notificationAuthToken the "
            "receiver expects)"
        )
    section = AppleSection(webhook_url=url, auth_token=token, tls_ca=ca)
    return SutManifest(name=url, apple=section, source=url)
