"""docs/configuration.md is generated from the settings objects and is current."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from shoal.config import load_config, reference

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "gen_config_docs.py"
PAGE = ROOT / "docs" / "configuration.md"


def test_the_reference_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_the_reference_lists_every_setting() -> None:
    page = PAGE.read_text()
    for setting in reference().settings:
        assert f"### `{setting.key}`" in page
        assert f"`{setting.env}`" in page
    for key, _ in reference().excluded:
        assert f"| `{key}` |" in page


def test_the_readme_links_the_reference() -> None:
    assert "docs/configuration.md" in (ROOT / "README.md").read_text()


def test_the_example_file_loads(tmp_path: Path) -> None:
    [example] = re.findall(r"```toml\n(.*?)```", PAGE.read_text(), re.S)
    file = tmp_path / "node.toml"
    file.write_text(example.replace("/run/secrets/shoal", str(tmp_path / "secret")))
    (tmp_path / "secret").write_text("s3cret\n")
    config = load_config(file, env={})
    assert config.node.system == "chat"
    assert config.remote.cluster_secret == b"s3cret"
    assert config.persistence.plugin == "cassandra"
