"""The SUT manifest (docs/sut-contract.md §2): parsing, with one clear error per problem.

The manifest has a ``name``, an optional ``[process]`` section, and one section per vendor
plug-in (``[<vendor>]``), each the plug-in's own pydantic model. Strings may use ``${VAR}`` or
``${VAR:-default}`` (the default may itself use variables): values come from the environment,
plus ``${PYTHON}`` (the interpreter running pytest) and ``${MANIFEST_DIR}``. Relative paths are
taken from the manifest's folder. Every error names the file and the key and says how to fix it.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
)

from conformance.text import brief
from conformance.vendors import discover

__all__ = [
    "ManifestError",
    "ManifestFile",
    "ProcessSection",
    "Section",
    "SutManifest",
    "WebUrl",
    "check_web_url",
    "load_manifest",
    "manifest_for_url",
    "parse_manifest",
]


class ManifestError(Exception):
    """A manifest (or --sut option) problem, worded for the user."""


class Section(BaseModel):
    """Base of every manifest section: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def check_web_url(url: str, schemes: tuple[str, ...] = ("http", "https")) -> str:
    """``url`` if it is a ``scheme://host[:port]/path`` URL with a valid port, else ValueError."""
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"{url!r} is not a {'/'.join(schemes)}://host[:port]/path URL")
    try:
        parts.port  # noqa: B018 (urlsplit checks the port range when it is read)
    except ValueError:
        raise ValueError(f"{url!r}: the port must be a number from 1 to 65535") from None
    if parts.port == 0:
        raise ValueError(f"{url!r}: the port must be a number from 1 to 65535")
    return url


WebUrl = Annotated[str, AfterValidator(check_web_url)]


def _existing_file(value: Path, info: ValidationInfo) -> Path:
    """Resolve a path against the manifest's folder and require the file to exist."""
    folder = (info.context or {}).get("folder")
    path = (Path(folder) / value).resolve() if folder else value.resolve()
    if not path.is_file():
        raise ValueError(f"{path} does not exist")
    return path


ManifestFile = Annotated[Path, AfterValidator(_existing_file)]


class ProcessSection(Section):
    command: list[str] = Field(min_length=1)
    cwd: Path = Field(default=Path("."), validate_default=True)
    env: dict[str, str] = {}
    ready: str | None = None
    ready_timeout_s: float = Field(default=30.0, gt=0, le=600)

    @field_validator("cwd")
    @classmethod
    def _folder(cls, value: Path, info: ValidationInfo) -> Path:
        folder = (info.context or {}).get("folder")
        path = (Path(folder) / value).resolve() if folder else value.resolve()
        if not path.is_dir():
            raise ValueError(f"{path} is not a folder")
        return path

    @field_validator("ready")
    @classmethod
    def _ready_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if urlsplit(value).scheme == "tcp":
            parts = urlsplit(value)
            try:
                port = parts.port
            except ValueError:
                port = None
            if not parts.hostname or not port:
                raise ValueError(f"{value!r}: a tcp readiness probe is tcp://host:port")
            return value
        return check_web_url(value)


class SutManifest(Section):
    """A parsed manifest. Vendor sections are fields named after their plug-in."""

    name: str = "sut"
    process: ProcessSection | None = None
    source: str = ""  # where it came from (manifest path or URL); not a manifest key

    def vendors(self) -> list[str]:
        """The profiles the SUT claims (a section present = the profile is claimed)."""
        return [name for name in discover() if self.section(name) is not None]

    def section(self, vendor: str) -> BaseModel | None:
        value = getattr(self, vendor, None)
        return value if isinstance(value, BaseModel) else None


def _manifest_model() -> type[SutManifest]:
    sections: dict[str, Any] = {
        name: (plugin.section_model() | None, None) for name, plugin in discover().items()
    }
    return create_model("SutManifest", __base__=SutManifest, **sections)


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _expand(value: Any, where: str, variables: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}.{k}", variables) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, where, variables) for v in value]
    if not isinstance(value, str):
        return value
    return _expand_text(value, where, variables)


MAX_NESTING = 32  # ${A:-${B:-…}} defaults nested deeper than this are refused
_MARK = re.compile(r"\$\{|\}")


@dataclass
class _Default:
    """An open ``${NAME:-`` whose default is being read: its text so far, and whether it is
    thrown away (the variable is set, or an enclosing default is thrown away)."""

    parts: list[str]
    skip: bool


def _expand_text(text: str, where: str, variables: Mapping[str, str]) -> str:
    """Replace ``${NAME}`` and ``${NAME:-default}`` (defaults may nest, at most
    :data:`MAX_NESTING` deep) in ``text``, in one pass: linear in its length, no recursion."""
    quoted = brief(repr(text), 120)
    stack = [_Default([], skip=False)]
    i = 0
    while (mark := _MARK.search(text, i)) is not None:
        top = stack[-1]
        if not top.skip:
            top.parts.append(text[i : mark.start()])
        i = mark.end()
        if mark.group() == "}":
            if len(stack) > 1:  # the end of the innermost default
                done = stack.pop()
                if not done.skip:
                    stack[-1].parts.append("".join(done.parts))
            elif not top.skip:
                top.parts.append("}")
            continue
        name = _NAME.match(text, i)
        if name is None:
            raise ManifestError(
                f"{where}: {quoted}: '${{' must start ${{NAME}} or ${{NAME:-default}}"
            )
        key, i = name.group(), name.end()
        if text.startswith(":-", i):
            if len(stack) > MAX_NESTING:
                raise ManifestError(
                    f"{where}: {quoted}: defaults nest more than {MAX_NESTING} deep"
                )
            if not top.skip and key in variables:
                top.parts.append(variables[key])
            stack.append(_Default([], skip=top.skip or key in variables))
            i += 2
            continue
        if not text.startswith("}", i):
            raise ManifestError(f"{where}: {quoted}: a '${{' is not closed by '}}'")
        i += 1
        if top.skip:
            continue
        if key not in variables:
            raise ManifestError(
                f"{where} uses ${{{key}}}, which is not set: export {key}, "
                f"or write ${{{key}:-default}}"
            )
        top.parts.append(variables[key])
    if len(stack) > 1:
        raise ManifestError(f"{where}: {quoted}: a '${{' is not closed by '}}'")
    if not stack[0].skip:
        stack[0].parts.append(text[i:])
    return "".join(stack[0].parts)


def load_manifest(path: Path) -> SutManifest:
    """Read and check a manifest; raise :class:`ManifestError` naming the file and key."""
    try:
        if not path.is_file():
            raise ManifestError(
                f"--sut={path}: no such file (give a manifest path or an https:// URL)"
            )
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ManifestError(
            f"--sut={path}: cannot read the manifest: {exc.strerror or exc} (check the path "
            "and its permissions)"
        ) from None
    try:
        raw = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ManifestError(f"{path}: its tables or arrays nest too deeply") from None
    return parse_manifest(raw, path)


def parse_manifest(raw: dict[str, Any], path: Path) -> SutManifest:
    """Check a manifest already read as TOML (``path`` names it in errors and anchors paths)."""
    folder = path.resolve().parent
    variables = {**os.environ, "PYTHON": sys.executable, "MANIFEST_DIR": str(folder)}
    try:
        raw = {k: _expand(v, f"{path}: {k}", variables) for k, v in raw.items()}
    except RecursionError:
        raise ManifestError(f"{path}: its tables or arrays nest too deeply") from None
    if "source" in raw:
        raise ManifestError(f"{path}: unknown key 'source' (it is not a manifest key)")
    try:
        manifest = _manifest_model().model_validate(
            {**raw, "source": str(path)}, context={"folder": folder}
        )
    except ValidationError as exc:
        raise ManifestError(_describe(path, exc)) from None
    if not manifest.vendors():
        known = ", ".join(f"[{name}]" for name in discover())
        raise ManifestError(f"{path}: declares no profile: add a section ({known})")
    return manifest


def _describe(path: Path, exc: ValidationError) -> str:
    lines = []
    known = ", ".join(["name", "[process]", *(f"[{n}]" for n in discover())])
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        section = f"[{loc[0]}] " if len(loc) > 1 else ""
        key = ".".join(loc[1:]) if len(loc) > 1 else (loc[0] if loc else "?")
        if error["type"] == "extra_forbidden":
            what = "unknown key (check its spelling against the SUT contract)"
            if len(loc) == 1:
                what = f"unknown key or section (known: {known})"
        elif error["type"] == "missing":
            what = "missing required key"
        else:
            what = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{path}: {section}{key}: {what}")
    return "\n".join(lines)


def manifest_for_url(url: str, vendor: str, *, token: str | None, ca: Path | None) -> SutManifest:
    """The manifest equivalent of ``--sut=URL --sut-token=… --sut-ca=…`` for one receiver."""
    if ca is not None and not ca.is_file():
        raise ManifestError(f"--sut-ca={ca}: no such file (the PEM of the CA that signed the SUT)")
    if vendor not in discover():
        raise ManifestError(f"no vendor plug-in {vendor!r} (known: {', '.join(discover())})")
    try:
        check_web_url(url)
        section = discover()[vendor].section_for_url(url, token=token, ca=ca)
    except ValidationError as exc:
        raise ManifestError(f"--sut={url}: {_describe(Path('--sut'), exc)}") from None
    except ValueError as exc:
        raise ManifestError(f"--sut={url}: {exc}") from None
    return _manifest_model()(name=url, source=url, **{vendor: section})
