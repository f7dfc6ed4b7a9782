"""KernelConfig is a frozen, validated value that round-trips through a plain dict."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from directconv import ConvShape, KernelConfig


def test_round_trip_through_dict_and_yaml():
    config = KernelConfig("avx2", 24, 4, cib=64, rows=2, parallel="rows", threads=2, unroll=4)
    data = config.to_dict()
    assert data["version"] == 1 and data["cob"] == 24
    assert KernelConfig.from_dict(data) == config
    assert KernelConfig.from_dict(yaml.safe_load(yaml.safe_dump(data))) == config


def test_frozen_and_hashable():
    config = KernelConfig("avx512", 48, 8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.cob = 32  # type: ignore[misc]
    assert len({config, KernelConfig("avx512", 48, 8)}) == 1
    assert config.replace(threads=2).threads == 2 and config.threads == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(isa="sse9", cob=8, wob=4), r"KernelConfig.isa must be one of .* got 'sse9'"),
        (dict(isa="avx2", cob=12, wob=4), r"cob \(C_o,b\) must be a multiple of the avx2 vector width 8, got 12"),
        (dict(isa="avx2", cob=8, wob=0), r"KernelConfig.wob must be in \[1, 64\], got 0"),
        (dict(isa="avx2", cob=8, wob=4, cib=12), r"cib \(C_i,b\) must be a multiple of the avx2 vector width 8"),
        (dict(isa="avx2", cob=8, wob=4, parallel="batch"), r"parallel must be one of \('co', 'rows'\)"),
        (dict(isa="avx2", cob=8, wob=4, threads=0), r"threads must be in \[1, 1024\], got 0"),
        (dict(isa="avx2", cob=8, wob=4, unroll=3), r"unroll must be one of \(1, 2, 4, 8\), got 3"),
        (dict(isa="avx2", cob=128, wob=64), r"needs 1024 accumulator vectors"),
    ],
)
def test_invalid_values_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        KernelConfig(**kwargs)


def test_wrong_types():
    with pytest.raises(TypeError, match=r"KernelConfig.cob must be an int, got '8' \(str\)"):
        KernelConfig("avx2", "8", 4)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"KernelConfig.wob must be an int, got True"):
        KernelConfig("avx2", 8, True)


def test_from_dict_refuses_unknown_and_missing_keys():
    with pytest.raises(ValueError, match=r"unknown KernelConfig keys \['flags'\]"):
        KernelConfig.from_dict({"isa": "avx2", "cob": 8, "wob": 4, "flags": "-O0"})
    with pytest.raises(ValueError, match=r"missing required keys \['wob'\]"):
        KernelConfig.from_dict({"isa": "avx2", "cob": 8})
    with pytest.raises(ValueError, match=r"version 1 expected, got 7"):
        KernelConfig.from_dict({"version": 7, "isa": "avx2", "cob": 8, "wob": 4})
    with pytest.raises(TypeError, match=r"read from a dict, got list"):
        KernelConfig.from_dict([1, 2])


def test_rows_of_a_single_row_kernel_count_its_register_tiles():
    # 1x15 has one output row: a rows split hands out its register tiles (2 of 13 columns), not rows.
    shape = ConvShape.from_args(1, 17, 1, 15, 1, 1, 1, 0)
    KernelConfig("avx512", 32, 13, rows=2, parallel="rows", threads=2).check_fits(shape)
    with pytest.raises(ValueError, match=r"rows=3 exceeds the layer's output height 1 and the 2 register tiles of"):
        KernelConfig("avx512", 32, 13, rows=3, parallel="rows", threads=2).check_fits(shape)


def test_check_fits_names_every_problem():
    shape = ConvShape.from_args(16, 8, 5, 5, 3, 3, 1, 1)
    with pytest.raises(ValueError) as info:
        KernelConfig("avx2", 16, 6, cib=24, rows=9).check_fits(shape)
    text = str(info.value)
    for part in ("C_o,b=16 exceeds", "W_o,b=6 exceeds", "C_i,b=24 exceeds", "rows=9 exceeds"):
        assert part in text
