"""Attribute docstrings of settings dataclasses, read from their source."""

from __future__ import annotations

import ast
import functools
import inspect
import itertools
import re
import textwrap

_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")


@functools.cache
def attribute_docs(cls: type) -> dict[str, str]:
    """``{field: docstring}`` for every annotated attribute followed by a string literal.

    The docstring is cleaned (``inspect.cleandoc``) and its Sphinx roles
    (``:class:`X```) are reduced to their text; nothing else is changed.
    """
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = next(node for node in tree.body if isinstance(node, ast.ClassDef)).body
    docs: dict[str, str] = {}
    for node, after in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = _ROLE.sub(r"``\1``", inspect.cleandoc(after.value.value))
    return docs
