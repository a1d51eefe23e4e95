"""Generate shoal/_proto from proto/*.proto (protobuf, gRPC and mypy stubs).

Usage::

    python scripts/gen_proto.py           # regenerate shoal/_proto in place
    python scripts/gen_proto.py --check   # exit 1 if the committed code is stale

grpc_tools.protoc writes ``import remote_pb2 as remote__pb2`` into the gRPC
module and the stubs, which only works with ``shoal/_proto`` on ``sys.path``;
the imports are rewritten to be package-relative (``from . import ...``).
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "shoal" / "_proto"
INIT_TEXT = '"""Code generated from proto/ by scripts/gen_proto.py. Do not edit."""\n'
# Generated files end with these; anything else in shoal/_proto is left alone.
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def _plugin(name: str) -> str:
    """The protoc plugin next to this interpreter (the venv's bin directory)."""
    candidate = Path(sys.executable).parent / name
    found = candidate if candidate.exists() else shutil.which(name)
    if found is None:
        sys.exit(f"{name} not found: install mypy-protobuf (pip install -e '.[dev]')")
    return str(found)


def generate(out: Path) -> None:
    from grpc_tools import protoc  # noqa: PLC0415 - a dev dependency, only needed here

    protos = sorted(PROTO_DIR.glob("*.proto"))
    if not protos:
        sys.exit(f"no .proto files in {PROTO_DIR}")
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *(str(p) for p in protos),
    ]
    if protoc.main(args) != 0:
        sys.exit("protoc failed")
    modules = [p.stem for p in protos]
    for path in out.iterdir():
        if path.name.endswith(GENERATED_SUFFIXES):
            _make_imports_relative(path, modules)
    (out / "__init__.py").write_text(INIT_TEXT)


def _make_imports_relative(path: Path, modules: list[str]) -> None:
    text = path.read_text()
    for module in modules:
        # "import remote_pb2 as remote__pb2" / "import remote_pb2"
        text = re.sub(
            rf"^import ({re.escape(module)}_pb2)\b",
            r"from . import \1",
            text,
            flags=re.MULTILINE,
        )
    path.write_text(text)


def _generated_files(directory: Path) -> set[str]:
    return {
        p.name
        for p in directory.iterdir()
        if p.name.endswith(GENERATED_SUFFIXES) or p.name == "__init__.py"
    }


def check() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        expected = _generated_files(fresh)
        actual = _generated_files(OUT_DIR) if OUT_DIR.exists() else set()
        stale = sorted(expected ^ actual)
        stale += sorted(
            name
            for name in expected & actual
            if not filecmp.cmp(fresh / name, OUT_DIR / name, shallow=False)
        )
    if stale:
        print(
            "shoal/_proto is stale (run `make proto`): " + ", ".join(stale),
            file=sys.stderr,
        )
        return 1
    print("shoal/_proto is up to date")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed code differs")
    args = parser.parse_args()
    if args.check:
        return check()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name in _generated_files(OUT_DIR):
        (OUT_DIR / name).unlink()
    generate(OUT_DIR)
    print(f"generated {', '.join(sorted(_generated_files(OUT_DIR)))} in {OUT_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
