"""The README's examples are real code: each must run as printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_the_first_example_is_a_short_counter() -> None:
    assert "class Counter(Actor)" in EXAMPLES[0]
    assert len(EXAMPLES[0].strip().splitlines()) < 25


@pytest.mark.parametrize("example", EXAMPLES, ids=[f"example-{i}" for i in range(len(EXAMPLES))])
def test_readme_example_runs(example: str, tmp_path: Path) -> None:
    # Run twice in a fresh working directory: persistent state must survive a restart.
    outputs = []
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "-c", example],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
    if "balance:" in example:
        assert outputs == ["balance: 10\n", "balance: 20\n"]
