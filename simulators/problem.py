"""One convention, named once: a function that looks for something wrong returns a
:data:`Problem`: ``None`` when all is well, else a sentence saying what is wrong, ready for a
report, a log or a refusal. Callers test it with ``if problem := look():``."""

from typing import TypeAlias

__all__ = ["Problem"]

Problem: TypeAlias = str | None
