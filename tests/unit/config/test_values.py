"""Setting kinds follow from annotations; a field with no kind fails loudly."""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import pytest

from shoal.config._values import BadValue, kind_of
from shoal.runtime import MailboxOverflow

KINDS = [
    (bool, "bool"),
    (int, "int"),
    (float, "float"),
    (str, "str"),
    (str | Path, "path"),
    (str | os.PathLike[str], "path"),
    (float | None, "float, or empty for none"),
    (tuple[str, ...], "list of str"),
    (frozenset[str], "set of str"),
    (Mapping[str, float], "table of float"),
    (Mapping[str, str | int], "table of str or int"),
    (Literal["a", "b"], "one of a, b"),
    (MailboxOverflow, "one of dead-letter, drop-oldest"),
]


@pytest.mark.parametrize(("annotation", "name"), KINDS, ids=[k[1] for k in KINDS])
def test_kinds_of_annotations(annotation: object, name: str) -> None:
    assert kind_of(annotation).name == name


@pytest.mark.parametrize("annotation", [random.Random, list[int], Mapping[int, str], bytes | int])
def test_an_annotation_without_a_kind_is_refused(annotation: object) -> None:
    with pytest.raises(TypeError, match="no configuration kind"):
        kind_of(annotation)


TEXT = [
    (int, " 10_000 ", 10_000),
    (float, "1e-3", 0.001),
    (bool, "ON", True),
    (bool, "0", False),
    (tuple[str, ...], " a , ,b ", ("a", "b")),
    (tuple[str, ...], "", ()),
    (Mapping[str, str | int], "class=X, dc1=3", {"class": "X", "dc1": 3}),
    (int | None, "None", None),
    (str | None, "none", "none"),
    (str | None, "", None),
]


@pytest.mark.parametrize(("annotation", "text", "value"), TEXT)
def test_text_is_parsed_by_kind(annotation: object, text: str, value: object) -> None:
    assert kind_of(annotation).from_text(text) == value


@pytest.mark.parametrize(
    ("annotation", "text"),
    [(int, "1.5"), (float, "nan"), (float, "fast"), (bool, "y"), (Mapping[str, int], "a")],
)
def test_bad_text_is_refused(annotation: object, text: str) -> None:
    with pytest.raises(BadValue):
        kind_of(annotation).from_text(text)
