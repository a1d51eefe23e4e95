"""``python -m examples.chat`` (what ``make chat`` runs): three nodes up, URLs printed,
one SIGINT (Ctrl-C) stops all three cleanly."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.multiprocess, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]


def test_make_chat_starts_three_nodes_and_ctrl_c_stops_them(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "examples.chat", "--data", str(tmp_path),
         "--http-port", "0", "--remote-port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, f"the launcher ended early: {''.join(lines)}"
            lines.append(line)
            if "Ctrl-C stops every node" in line:
                break
        output = "".join(lines)
        assert "The chat cluster is up" in output
        assert "shared by every node" in output
        urls = re.findall(r"chat (http://127\.0\.0\.1:\d+)/", output)
        assert len(urls) == 3
        for url in urls:
            with urllib.request.urlopen(f"{url}/api/health", timeout=10) as answer:
                assert json.loads(answer.read())["ok"] is True
        with urllib.request.urlopen(f"{urls[0]}/api/cluster", timeout=10) as answer:
            members = json.loads(answer.read())["members"]
        assert [m["status"] for m in members] == ["up"] * 3
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, rest
        assert "stopped (exit codes [0, 0, 0])" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
