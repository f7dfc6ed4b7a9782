"""The tuner and the config store on grouped, depthwise and dilated layers: keys, search spaces, reuse, commands."""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import optuna
import pytest
import yaml

from directconv.cli.layers import explicit_shape
from directconv.cli.main import build_parser
from directconv.core.config import KernelConfig
from directconv.core.shape import ConvShape
from directconv.core.suite import suite
from directconv.machines.loader import load_machine
from directconv.model import predict, search_space, unpruned_space
from directconv.tuner import store
from directconv.tuner.backend import SimulatedBackend, simulated
from directconv.tuner.fleet import STUDY_NAME
from directconv.tuner.params import ParamSpace, config_params
from directconv.tuner.select import nearest_tuned, tune_command
from directconv.tuner.storage import study_name
from directconv.tuner.tune import TuneOptions, tune

FID = "0123456789abcdef"
ZEN3 = load_machine("zen3")
DEPTHWISE = ConvShape.from_args(144, 144, 56, 56, 3, 3, 1, 1, groups=144)
RESNEXT = ConvShape.from_args(128, 128, 56, 56, 3, 3, 1, 1, groups=32)
GROUPED = ConvShape.from_args(96, 256, 27, 27, 5, 5, 1, 2, groups=2)
DILATED = ConvShape.from_args(256, 256, 33, 33, 3, 3, 1, 6, dilation=6)
PLAIN = ConvShape.from_args(144, 144, 56, 56, 3, 3, 1, 1)


def entry(shape: ConvShape, config: KernelConfig, gflops: float = 40.0) -> store.Entry:
    return store.Entry(
        layer="",
        shape=shape,
        threads=config.threads,
        config=config,
        gflops=gflops,
        spread=0.02,
        percent_of_peak=gflops,
        trials=10,
        date="2026-11-29T00:00:00+00:00",
        directconv_version="0.1.0",
        generator_version=1,
        compiler="gcc 12",
        flags=("-mavx2", "-mfma"),
    )


def record(tmp_path: Path, e: store.Entry) -> None:
    store.record(e, machine="testbox", fingerprint_id=FID, fingerprint={"vendor": "test"}, store=tmp_path)


# ---- Keys: the store and the studies tell grouped and dilated layers apart -----------------------------------------


def test_store_entries_with_groups_and_dilation_round_trip(tmp_path):
    for shape in (DEPTHWISE, GROUPED, DILATED):
        record(tmp_path, entry(shape, predict(shape, ZEN3).config))
    record(tmp_path, entry(PLAIN, predict(PLAIN, ZEN3).config))
    shapes = [e["shape"] for e in yaml.safe_load((tmp_path / f"testbox-{FID}.yaml").read_text())["entries"]]
    assert any(s.get("groups") == 144 for s in shapes) and any(s.get("dh") == s.get("dw") == 6 for s in shapes)
    for shape in (DEPTHWISE, GROUPED, DILATED, PLAIN):
        found = store.lookup(shape, 1, FID, store=tmp_path)
        assert found is not None and found.entry == entry(shape, predict(shape, ZEN3).config)
    # The plain layer of the same channels and size is its own entry: groups are part of the key.
    plain, depthwise = (store.lookup(s, 1, FID, store=tmp_path) for s in (PLAIN, DEPTHWISE))
    assert plain is not None and depthwise is not None and plain.entry.config != depthwise.entry.config


def test_study_names_carry_groups_and_dilation_and_keep_plain_names():
    plain = study_name(FID, PLAIN, 1)
    assert "-g" not in plain and "-d" not in plain.split("/")[2]
    names = {study_name(FID, s, 1) for s in (PLAIN, DEPTHWISE, dataclass_groups(PLAIN, 144), DILATED)}
    assert len(names) == 3  # DEPTHWISE and PLAIN with groups=144 are the same layer
    assert "-g144/" in study_name(FID, DEPTHWISE, 1) and "-d6x6/" in study_name(FID, DILATED, 1)
    for shape in (DEPTHWISE, RESNEXT, DILATED):
        match = STUDY_NAME.match(study_name(FID, shape, 2))
        assert match is not None and match["threads"] == "2"


def dataclass_groups(shape: ConvShape, groups: int) -> ConvShape:
    return ConvShape(**{**shape.to_dict(), "groups": groups})


# ---- Search spaces: only configurations that fit ---------------------------------------------------------------------


@pytest.mark.parametrize("shape", [DEPTHWISE, RESNEXT, GROUPED, DILATED], ids=lambda s: s.describe())
def test_every_configuration_the_sampler_can_reach_fits(shape):
    rng = random.Random(7)
    spaces = [search_space(shape, ZEN3, t).configs for t in (1, 2)] + [tuple(unpruned_space(shape, ZEN3, 1))]
    for configs in spaces:
        space = ParamSpace(configs)
        for _ in range(20):
            params = {name: rng.choice(values) for name, values in space.values.items()}
            params["vectors"] = rng.randint(1, 9)  # also outside the space: snaps to the nearest config in it
            params["wob"] = rng.randint(1, 40)
            config = space.snap(params)
            assert config in configs
            config.check_fits(shape)


def test_lane_wise_spaces_fix_cache_block_and_unroll():
    space = ParamSpace(search_space(DEPTHWISE, ZEN3, 2).configs)
    assert space.values["cib"] == ["all"] and space.values["unroll"] == [1]
    grouped = ParamSpace(tuple(unpruned_space(GROUPED, ZEN3)))
    assert max(grouped.values["vectors"]) * 8 <= GROUPED.cog
    assert max(int(c) for c in grouped.values["cib"] if c != "all") <= GROUPED.cig


def test_the_model_side_of_tune_handles_every_suite_layer():
    for layer in suite():
        configs = search_space(layer.shape, ZEN3, 1).configs
        ParamSpace(configs)
        for config in configs:
            config.check_fits(layer.shape)


@pytest.mark.parametrize("shape", [DEPTHWISE, DILATED], ids=["depthwise", "dilated"])
def test_a_simulated_tuning_run_seeds_the_prediction_and_keeps_a_fitting_best(url, shape):
    def outcome(config: KernelConfig):
        return simulated(config, shape, float(config.cob * config.wob + config.unroll))

    result = tune(
        shape,
        machine=ZEN3,
        fingerprint_id="replay",
        storage=url,
        backend=SimulatedBackend(outcome),
        options=TuneOptions(progress=False, trials=6, confirm_rounds=0),
    )
    assert result.best is not None and result.failed_now == 0
    result.best.config.check_fits(shape)
    (summary,) = optuna.get_all_study_summaries(url)
    assert summary.study_name == study_name("replay", shape, 1)
    study = optuna.load_study(study_name=summary.study_name, storage=url)
    first = min(study.get_trials(deepcopy=False), key=lambda t: t.number)
    assert first.params == config_params(predict(shape, ZEN3).config)


# ---- Reuse and commands ----------------------------------------------------------------------------------------------


def test_a_tuned_neighbour_of_another_kernel_kind_is_not_reused(tmp_path):
    # A plain 3x3 layer's tile with cib all and unroll 1 would pass check_fits on a depthwise layer, but it was
    # tuned for the broadcast kernel: it says nothing about the lane-wise one.
    plain_config = KernelConfig("avx2", 8, 14)
    # 40x40: within 2x of the layer's 56x56 pixels (select.near_enough), so only the kind keeps it out.
    record(tmp_path, entry(ConvShape.from_args(144, 144, 40, 40, 3, 3, 1, 1), plain_config))
    found = store.entries_for(FID, store=tmp_path)
    plain_config.check_fits(DEPTHWISE)
    assert nearest_tuned(DEPTHWISE, 1, ZEN3, found) is None
    neighbour = ConvShape.from_args(144, 144, 40, 40, 3, 3, 1, 1, groups=144)
    record(tmp_path, entry(neighbour, predict(neighbour, ZEN3).config))
    near = nearest_tuned(DEPTHWISE, 1, ZEN3, store.entries_for(FID, store=tmp_path))
    assert near is not None and near.entry.shape == neighbour


@pytest.mark.parametrize(
    "shape",
    [  # off the suite (whose layers the command names with --layer)
        ConvShape.from_args(144, 144, 54, 54, 3, 3, 1, 1, groups=144),
        ConvShape.from_args(128, 128, 54, 54, 3, 3, 1, 1, groups=32),
        ConvShape.from_args(256, 256, 33, 33, 3, 3, 1, 4, dilation=4),
    ],
    ids=lambda s: s.describe(),
)
def test_the_tune_command_names_groups_and_dilation_and_parses_back(shape):
    command = tune_command(shape, 1)
    assert command.startswith("directconv tune --ci")
    args = build_parser().parse_args(command.split()[1:])
    assert isinstance(args, argparse.Namespace) and explicit_shape(args) == shape
