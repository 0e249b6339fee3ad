"""The documentation runs: README and docs/ Python blocks execute as written, docstring examples pass doctest."""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SRC = ROOT / "src" / "descend"


def _python_blocks(text: str) -> list[str]:
    """The ```python blocks (```py marks a fragment that needs a context a test cannot give, e.g. torchrun)."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def _pages() -> list[object]:
    # the README's benchmark block runs descend.bench.compare() on 60k-sample MNIST-1D: minutes, so slow step
    return [pytest.param(p, marks=pytest.mark.slow) if p.name == "README.md" else p
            for p in PAGES if _python_blocks(p.read_text())]


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_page_python_blocks_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A page's blocks run in order in one namespace (a later block may use an earlier one's names)."""
    monkeypatch.chdir(tmp_path)  # blocks that write files write them here
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    for i, block in enumerate(_python_blocks(page.read_text())):
        code = compile(block, f"{page.name} block {i + 1}", "exec")
        exec(code, namespace)  # the repository's own documentation, not user input


def _modules_with_examples() -> list[str]:
    names = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "__main__.py" or ">>> " not in path.read_text():
            continue
        rel = path.relative_to(SRC.parent).with_suffix("")
        names.append(".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts))
    return names


@pytest.mark.parametrize("module", _modules_with_examples())
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0 and result.failed == 0, result
