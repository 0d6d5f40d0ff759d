"""The torch path against the numpy path: same prices and first-order greeks.

Tolerance: ``|torch - numpy| <= 1e-12·|numpy| + 1e-15·S``; the absolute term only matters for
deep out-of-the-money prices below about 1e-3 of spot, where one ulp of ``exp``/``log`` is
amplified by cancellation. Every available device is tested (CPU here; CUDA where present).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from amcp.errors import DataError
from amcp.options.black_scholes import bsm_greeks, bsm_price
from amcp.options.torch_pricing import TORCH_GREEKS, resolve_device, torch_bsm_greeks, torch_bsm_price

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
SPOT = 100.0


def _inputs() -> list[np.ndarray]:
    rng = np.random.default_rng(21)
    n = 20_000
    k = SPOT * np.exp(rng.uniform(np.log(0.3), np.log(3.0), n))
    t = rng.choice([0.0, 1 / 365, 30 / 365, 1.0, 5.0], n) * rng.uniform(0.5, 1.0, n)
    v = rng.choice([0.0, 0.01, 0.2, 2.0], n) * rng.uniform(0.5, 1.0, n)
    r, q = rng.uniform(-0.01, 0.08, n), rng.uniform(0.0, 0.06, n)
    return [np.full(n, SPOT), k, t, r, q, v, rng.random(n) < 0.5]


def _assert_matches(got: torch.Tensor, expected: np.ndarray) -> None:
    assert got.dtype == torch.float64
    values = got.cpu().numpy()
    bad = np.abs(values - expected) > 1e-12 * np.abs(expected) + 1e-15 * SPOT
    assert not bad.any(), (values[bad][:3], expected[bad][:3])


@pytest.mark.parametrize("device", DEVICES)
def test_torch_prices_match_numpy_prices(device: str) -> None:
    inputs = _inputs()
    got = torch_bsm_price(*inputs, device=device)
    assert got.device.type == device
    _assert_matches(got, bsm_price(*inputs))


@pytest.mark.parametrize("device", DEVICES)
def test_torch_greeks_match_numpy_greeks(device: str) -> None:
    inputs = _inputs()
    got = torch_bsm_greeks(*inputs, device=device)
    expected = bsm_greeks(*inputs)
    assert tuple(got) == TORCH_GREEKS
    for name in TORCH_GREEKS:
        _assert_matches(got[name], expected[name])


def test_tensor_inputs_broadcast_like_numpy() -> None:
    strikes = torch.tensor([90.0, 100.0, 110.0], dtype=torch.float64)
    got = torch_bsm_price(torch.tensor([[95.0], [105.0]]), strikes, 0.5, 0.03, 0.01, 0.25, True, device="cpu")
    expected = bsm_price(np.array([[95.0], [105.0]]), strikes.numpy(), 0.5, 0.03, 0.01, 0.25, True)
    assert got.shape == (2, 3)
    _assert_matches(got, expected)


def test_auto_device_is_cuda_exactly_when_cuda_is_available() -> None:
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(torch.device("cpu")).type == "cpu"


def test_unknown_device_is_rejected_naming_it() -> None:
    with pytest.raises(DataError, match="got 'tpu-7'"):
        resolve_device("tpu-7")


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"vol": -0.2}, r"vol must be >= 0 \(got -0.2\)"),
        ({"spot": float("nan")}, "spot must be finite"),
        ({"is_call": 1}, "is_call must be boolean"),
    ],
)
def test_invalid_inputs_raise_as_the_numpy_path_does(kwargs: dict[str, object], fragment: str) -> None:
    args: dict[str, object] = {"spot": 100.0, "strike": 100.0, "t_years": 1.0, "rate": 0.01}
    args |= {"div_yield": 0.0, "vol": 0.2}
    args |= kwargs
    is_call = args.pop("is_call", True)
    with pytest.raises(DataError, match=fragment):
        torch_bsm_price(is_call=is_call, device="cpu", **args)
