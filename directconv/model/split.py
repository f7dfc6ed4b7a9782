"""How several threads share one layer: by output-channel blocks, or by (block, rows) tasks.

The kernel hands out tasks one at a time (a dynamic schedule). A task is either one output-channel block over every
row ("co", the paper's split) or one block over a few rows ("rows"). In a rows split the block index varies
fastest, so the threads work on the same input rows at the same time, each for another output-channel block.

Which split to take follows from what each thread reads. In a co split every thread reads the whole input and its
share of the weights; in a rows split its share of the input and all the weights (kept in cache from one task to
the next). Per thread that is I + W/T against I/T + W: rows when the input is the larger operand, co when the
weights are, and rows again when too few output-channel blocks divide poorly over the threads (balance below
CO_BALANCE_MIN). The measurements behind the rule, and where it is still coarse, are in the model's design notes
(docs/).
"""

from __future__ import annotations

import math

from directconv.core.shape import LANE_KINDS, ConvShape, kernel_kind, mean_window, single_row_by_tiles, split_units
from directconv.machines.machine import Machine

# Rows per task in a rows split: a task reads every block's weights once for 4 rows, not for every row.
ROWS_PER_TASK = 4
# The co split's least balance (tasks / (tasks per thread * threads)): 13 blocks on 2 threads (0.93) still pay,
# 2 blocks on 3 threads (0.67) leave a third of the machine idle.
CO_BALANCE_MIN = 0.9


def output_blocks(shape: ConvShape, machine: Machine, cob: int) -> int:
    """NJ: output-channel blocks of `cob` channels; in a grouped layer each group has its own (a register block
    stays within its group), so NJ counts groups x blocks per group."""
    lanes, vectors = machine.n_vec, cob // machine.n_vec
    if kernel_kind(shape, lanes) == "grouped":
        return shape.groups * _ceil_div(shape.cog // lanes, vectors)
    return _ceil_div(_ceil_div(shape.co, lanes), vectors)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def balance(tasks: int, threads: int) -> float:
    """Share of the threads' time spent working when `tasks` equal tasks go to `threads` threads."""
    return tasks / (math.ceil(tasks / threads) * threads)


def operand_bytes(shape: ConvShape, lanes: int) -> tuple[int, int]:
    """(input, weights) bytes in the blocked layouts (channels padded to whole vectors of `lanes`). A group's
    filters see only its C_i/groups input channels; kernels whose vectors hold several groups keep the weights
    lane by lane, C_i/groups vectors per tap and output vector, and grouped-window ones over their input windows
    (kernels/layout.py)."""
    ci = -(-shape.ci // lanes) * lanes
    co = -(-shape.co // lanes) * lanes
    kind = kernel_kind(shape, lanes)
    per_filter = shape.cig if kind in LANE_KINDS else -(-shape.cig // lanes) * lanes
    if kind == "grouped-window":  # one-vector blocks' windows (zeros outside the group included)
        per_filter = mean_window(shape, lanes)
    return ci * shape.h * shape.w * 4, co * per_filter * shape.kh * shape.kw * 4


def choose_parallel(
    shape: ConvShape, machine: Machine, cob: int, threads: int, wob: int | None = None
) -> tuple[str, int | None, float, str]:
    """(parallel axis, rows per task, balance in (0, 1], reason); `wob` splits a layer of one output row by tiles."""
    nj = output_blocks(shape, machine, cob)
    if threads == 1:
        return "co", None, 1.0, "one thread: a task is a whole output-channel block, all rows"
    units = split_units(shape, wob, machine.n_vec)
    rows = min(ROWS_PER_TASK, units)
    row_tasks = nj * -(-units // rows)
    by_tiles = wob is not None and single_row_by_tiles(shape, machine.n_vec)
    unit = f"tiles of its one row ({units} tiles of {wob} columns)" if by_tiles else "rows"
    rows_balance = balance(row_tasks, threads)
    co_balance = balance(nj, threads)
    inputs, weights = operand_bytes(shape, machine.n_vec)
    sizes = f"input {inputs / 1024:.0f} KiB, weights {weights / 1024:.0f} KiB"
    # A lane-wise block reads only its own groups' input blocks: split by rows, two threads would share nothing and
    # each would walk every block (measured: docs/design.md, "Lane-wise layers split whole blocks").
    if kernel_kind(shape, machine.n_vec) in LANE_KINDS and co_balance >= CO_BALANCE_MIN:
        return (
            "co",
            None,
            co_balance,
            (
                f"lane-wise: each output-channel block reads only its own groups' input blocks, so threads share "
                f"no operand: whole blocks per task, {nj} blocks over {threads} threads, balance {co_balance:.0%}"
            ),
        )
    if inputs > weights:
        return (
            "rows",
            rows,
            rows_balance,
            (
                f"{sizes}: the input is the larger operand, so the threads share it: {row_tasks} tasks of one "
                f"output-channel block x {rows} {unit}, the blocks varying fastest (balance {rows_balance:.0%})"
            ),
        )
    if co_balance >= CO_BALANCE_MIN:
        return (
            "co",
            None,
            co_balance,
            (
                f"the paper's split: {sizes}: the weights are the larger operand, so each thread reads only its own "
                f"output-channel blocks' weights; {nj} blocks over {threads} threads, balance {co_balance:.0%}"
            ),
        )
    return (
        "rows",
        rows,
        rows_balance,
        (
            f"{sizes}, but {nj} output-channel blocks divide poorly over {threads} threads (balance {co_balance:.0%}): "
            f"{row_tasks} tasks of one block x {rows} {unit} instead, balance {rows_balance:.0%}"
        ),
    )


def split_balance(
    shape: ConvShape, machine: Machine, parallel: str, rows: int | None, cob: int, threads: int, wob: int | None = None
) -> float:
    """Balance of an arbitrary split: a co split without rows is one task per block."""
    nj = output_blocks(shape, machine, cob)
    if parallel == "co" and rows is None:
        return balance(nj, threads)
    units = split_units(shape, wob, machine.n_vec)
    r = units if rows is None else min(rows, units)
    return balance(nj * -(-units // r), threads)
