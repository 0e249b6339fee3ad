"""The one argument-check module every family uses: its wording, its torch-free import, and the re-exports."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from descend import _validate as v


def test_float_messages_name_argument_and_interval() -> None:
    with pytest.raises(ValueError, match=r"^lr must be in \[0\.0, inf\), got -1$"):
        v.check_float("lr", -1, 0.0)
    with pytest.raises(ValueError, match=r"^eps must be in \(0\.0, inf\), got 0\.0$"):
        v.check_float("eps", 0.0, 0.0, low_open=True)
    with pytest.raises(ValueError, match=r"^beta must be in \[0\.0, 1\.0\), got 1\.0$"):
        v.check_float("beta", 1.0, 0.0, 1.0, high_open=True)
    # The type error names the same interval (infinite ends open in both messages).
    with pytest.raises(ValueError, match=r"^lr must be a real number in \[0\.0, inf\), got 'x'$"):
        v.check_float("lr", "x", 0.0)
    with pytest.raises(ValueError, match=r"^lr must be a real number in \(-inf, inf\), got True$"):
        v.check_float("lr", True)
    with pytest.raises(ValueError, match=r"^lr must be in \(-inf, inf\), got nan$"):
        v.check_float("lr", math.nan)
    with pytest.raises(ValueError, match=r"^lr must be a real number in \[0\.0, inf\), got a tensor of shape \(2,\)$"):
        v.check_float("lr", torch.ones(2), 0.0)
    assert v.check_float("lr", torch.tensor(0.5), 0.0) == 0.5


def test_int_choice_flag_betas_messages() -> None:
    with pytest.raises(ValueError, match=r"^steps must be an integer in \[1, inf\], got 0$"):
        v.check_int("steps", 0, 1)
    with pytest.raises(ValueError, match=r"^steps must be an integer in \[1, 5\], got 2\.0$"):
        v.check_int("steps", 2.0, 1, 5)
    with pytest.raises(ValueError, match=r"^steps must be an integer in \[0, inf\], got True$"):
        v.check_int("steps", True)
    assert v.check_optional_int("k", None) is None
    with pytest.raises(ValueError, match=r"^k must be an integer in \[1, inf\], got 0$"):
        v.check_optional_int("k", 0)
    with pytest.raises(ValueError, match=r"^method must be one of \('cg', 'neumann'\), got 'qr'$"):
        v.check_choice("method", "qr", ("cg", "neumann"))
    with pytest.raises(ValueError, match=r"^flag must be one of \(True, False\), got tensor\(True\)$"):
        v.check_choice("flag", torch.tensor(True), (True, False))
    with pytest.raises(ValueError, match=r"^nesterov must be True or False, got 1$"):
        v.check_flag("nesterov", 1)
    with pytest.raises(ValueError, match=r"^betas\[1\] must be in \[0\.0, 1\.0\), got 1\.0$"):
        v.check_betas("betas", (0.9, 1.0))
    with pytest.raises(ValueError, match=r"^x must have shape \(2,\), got \(3,\)$"):
        v.check_vector("x", torch.zeros(3), like=torch.zeros(2))
    with pytest.raises(ValueError, match=r"^loss is not finite"):
        v.check_finite("loss", torch.tensor(math.inf))


def test_every_family_uses_the_same_functions() -> None:
    import descend.bilevel._validate as bv
    import descend.optim._validate as ov

    for mod in (ov, bv):
        for name in mod.__all__:
            assert getattr(mod, name) is getattr(v, name), f"{mod.__name__}.{name} is a second copy"


def test_import_does_not_load_torch() -> None:
    code = "import sys, descend._validate as v; v.check_float('a', 1.0); v.check_int('b', 1); " \
           "assert 'torch' not in sys.modules, 'descend._validate imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
