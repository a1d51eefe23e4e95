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


def test_the_persistent_example_names_its_manifests() -> None:
    # A default manifest is the class's module and name: moving the class would
    # orphan the stored events, so the example users copy must not rely on it.
    persistent = [e for e in EXAMPLES if "PersistentActor" in e]
    assert persistent
    for example in persistent:
        assert re.search(r'@message\(manifest="[^"]+"\)', example)
        assert not re.search(r"^@message$", example, re.M)


def test_installing_into_a_project_is_separate_from_the_test_command() -> None:
    text = README.read_text()
    install = text.index("## Installing Shoal into your project")
    tests = text.index("## Running the tests")
    section = text[install : text.index("\n## ", install + 1)]
    assert "pip install /path/to/shoal" in section
    assert "git+https://" in section
    assert "make test" in text[tests:]


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
