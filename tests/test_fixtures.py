"""The golden fixtures shipped as package data (descend.fixtures): the same bytes as the recorded originals,
inside a built wheel, and replayed by ``python -m descend.{optim,bilevel}.replay`` when no path is given."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from descend import fixtures

from .conftest import ROOT, SHARED


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_api_lists_each_set_with_its_format_doc() -> None:
    opt, bil = fixtures.files("optimizers"), fixtures.files("bilevel")
    assert len(opt) >= 39 and len(bil) >= 6
    assert all(p.suffix == ".json" and p.is_file() for p in opt + bil)
    assert [p.name for p in fixtures.files("optimizers", "muon__")] == sorted(p.name for p in opt
                                                                            if p.name.startswith("muon__"))
    assert "descend-optimizer-fixture/1" in fixtures.readme("optimizers")
    assert "descend-bilevel-fixture/1" in fixtures.readme("bilevel")
    with pytest.raises(ValueError, match=r"^kind must be one of \('optimizers', 'bilevel'\), got 'classic'$"):
        fixtures.files("classic")


def test_packaged_copy_is_byte_identical_to_shared_reference() -> None:
    """A fixture recorded into shared/reference but not copied into src/descend/fixtures (or edited in one place
    only) fails here.  Skipped where the shared directory is absent (a pip or sdist install), unless
    DESCEND_SHARED names it explicitly (CI), where its absence is an error."""
    reference = SHARED / "reference"
    if not reference.is_dir():
        if "DESCEND_SHARED" in os.environ:
            raise AssertionError(f"DESCEND_SHARED is set but {reference} does not exist")
        pytest.skip(f"no recorded originals at {reference} (set DESCEND_SHARED) to compare the packaged copy with")
    for kind in fixtures.KINDS:
        original, packaged = _tree(reference / kind), _tree(fixtures.directory(kind))
        assert sorted(original) == sorted(packaged), (
            f"{kind}: only in {reference / kind}: {sorted(set(original) - set(packaged))}; only in the package: "
            f"{sorted(set(packaged) - set(original))} (copy the fixtures into src/descend/fixtures/{kind}/)")
        changed = [name for name in original if original[name] != packaged[name]]
        assert not changed, f"{kind}: packaged copy differs from {reference / kind}: {changed}"
    assert sorted(p.name for p in reference.iterdir()) == sorted(fixtures.KINDS), "a new fixture set is not packaged"


def test_built_wheel_contains_the_fixtures(tmp_path: Path) -> None:
    """Build a wheel offline from a copy of the source (so the checkout gets no build/ or egg-info) and check it
    holds every packaged fixture and README at descend/fixtures/<kind>/."""
    try:
        import setuptools
        import wheel  # the build backend needs it; offline, pip cannot fetch it

        usable = int(setuptools.__version__.split(".")[0]) >= 77  # pyproject's [build-system] requires
    except ImportError:
        usable = False
    if not usable:
        why = "building a wheel offline needs setuptools>=77 and wheel installed (the dev extra)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    src = tmp_path / "src-copy"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path / "wheel"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "-q", "-w", str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = out.glob("descend-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    for kind in fixtures.KINDS:
        expected = {f"descend/fixtures/{kind}/{p.name}" for p in fixtures.directory(kind).iterdir() if p.is_file()}
        assert f"descend/fixtures/{kind}/README.md" in expected
        assert expected <= names, f"missing from the wheel: {sorted(expected - names)}"
    assert "descend/fixtures/__init__.py" in names


def _stand_in(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kind: str, name: str) -> None:
    """A directory standing in for the packaged ``kind`` set: one good fixture and one broken file (status 2
    then proves the broken one was read, so the replayer's default really is ``fixtures.directory(kind)``)."""
    shutil.copy2(fixtures.directory(kind) / name, tmp_path / name)
    (tmp_path / "zz_broken.json").write_text("{")
    real = fixtures.directory
    monkeypatch.setattr(fixtures, "directory", lambda k: tmp_path if k == kind else real(k))


# The whole packaged sets are replayed by tests/optim/test_replay.py and tests/bilevel/test_replay.py; these two
# check only the command lines' default.
def test_bilevel_replay_without_paths_uses_the_packaged_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _stand_in(monkeypatch, tmp_path, "bilevel", "amigo_cg__n30_kappa100_K60.json")
    from descend.bilevel import replay

    assert replay.main(["--no-diagnostics"]) == 2
    out, err = capsys.readouterr()
    assert f"replaying the fixtures packaged with descend in {tmp_path}" in err
    assert "amigo_cg__n30_kappa100_K60.json" in out and " ok" in out and "REFUSED" in out


def test_optimizer_replay_without_paths_uses_the_packaged_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _stand_in(monkeypatch, tmp_path, "optimizers", "lion__defaults.json")
    from descend.optim import replay

    assert replay.main([]) == 2
    out, err = capsys.readouterr()
    assert f"replaying the fixtures packaged with descend in {tmp_path}" in err
    assert "lion__defaults.json" in out and " ok" in out and "REFUSED" in out
