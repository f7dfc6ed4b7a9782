"""How several threads share one layer: by output-channel blocks, or by (block, rows) tasks.

The kernel hands out tasks one at a time (a dynamic schedule). A task is either one output-channel block over every
row ("co", the paper's split) or one block over a few rows ("rows"). In a rows split the block index varies
fastest, so the threads work on the same input rows at the same time, each for another output-channel block.

Which split to take follows from what each thread reads. In a co split every thread reads the whole input and its
share of the weights; in a rows split its share of the input and all the weights (kept in cache from one task to
the next). Per thread that is I + W/T against I/T + W: rows when the input is the larger operand, co when the
weights are. Measured at 2 threads on Zen 3, 12 interleaved rounds, medians of per-round ratios
(benchmarks/split_ab.py, benchmarks/results/split-ab-zen3-t2.json):
  - input larger (AlexNet and ResNet-50 conv1, VGG-16 conv1_2 to conv3_2, ResNet-50 res2_3x3 and res3_1x1s2): rows
    of ROWS_PER_TASK beat co on 6 of 7 layers, by 4-9%; on VGG-16 conv3_2 co ran 9% faster.
  - weights larger: co. On the two 9 MiB VGG-16 layers co ran 5-12% faster than rows of 4 and 10-18% faster than
    rows of 1 (the old rule sent both to rows of 1: 13 blocks do not divide by 2). On the other such layers rows of
    4 ran from 2% slower to 12% faster than co (AlexNet conv3): a finer rule for weights that do not dwarf the
    input is still to be found.
  - too few output-channel blocks to divide well (balance below CO_BALANCE_MIN): rows, ROWS_PER_TASK at a time.
"""

from __future__ import annotations

import math

from directconv.core.shape import ConvShape
from directconv.machines.machine import Machine

# Rows per task in a rows split: 4, so that a task reads every block's weights once for 4 rows, not for every row.
# Measured, the two are close (split-ab-zen3-t2.json, 2 threads): where the weights are larger 4 rows ran 4% slower
# to 7% faster than 1 (VGG-16's 9 MiB layers +4-5%); where the input is larger 1 row ran 1% slower to 10% faster
# than 4 (res3_1x1s2). Not settled.
ROWS_PER_TASK = 4
# The co split's least balance (tasks / (tasks per thread * threads)). 13 blocks on 2 threads (0.93) still beat
# rows on VGG-16 conv5_2; 2 blocks on 3 threads (0.67) leave a third of the machine idle.
CO_BALANCE_MIN = 0.9


def output_blocks(shape: ConvShape, machine: Machine, cob: int) -> int:
    """NJ: output-channel blocks of `cob` channels."""
    return -(-(-(-shape.co // machine.n_vec)) // (cob // machine.n_vec))


def balance(tasks: int, threads: int) -> float:
    """Share of the threads' time spent working when `tasks` equal tasks go to `threads` threads."""
    return tasks / (math.ceil(tasks / threads) * threads)


def operand_bytes(shape: ConvShape, lanes: int) -> tuple[int, int]:
    """(input, weights) bytes in the blocked layouts (channels padded to whole vectors of `lanes`)."""
    ci = -(-shape.ci // lanes) * lanes
    co = -(-shape.co // lanes) * lanes
    return ci * shape.h * shape.w * 4, co * ci * shape.kh * shape.kw * 4


def choose_parallel(shape: ConvShape, machine: Machine, cob: int, threads: int) -> tuple[str, int | None, float, str]:
    """(parallel axis, rows per task, balance in (0, 1], reason)."""
    nj = output_blocks(shape, machine, cob)
    if threads == 1:
        return "co", None, 1.0, "one thread: a task is a whole output-channel block, all rows"
    rows = min(ROWS_PER_TASK, shape.ho)
    row_tasks = nj * -(-shape.ho // rows)
    rows_balance = balance(row_tasks, threads)
    co_balance = balance(nj, threads)
    inputs, weights = operand_bytes(shape, machine.n_vec)
    sizes = f"input {inputs / 1024:.0f} KiB, weights {weights / 1024:.0f} KiB"
    if inputs > weights:
        return "rows", rows, rows_balance, (
            f"{sizes}: the input is the larger operand, so the threads share it: {row_tasks} tasks of one "
            f"output-channel block x {rows} rows, the blocks varying fastest (balance {rows_balance:.0%})"
        )
    if co_balance >= CO_BALANCE_MIN:
        return "co", None, co_balance, (
            f"the paper's split: {sizes}: the weights are the larger operand, so each thread reads only its own "
            f"output-channel blocks' weights; {nj} blocks over {threads} threads, balance {co_balance:.0%}"
        )
    return "rows", rows, rows_balance, (
        f"{sizes}, but {nj} output-channel blocks divide poorly over {threads} threads (balance {co_balance:.0%}): "
        f"{row_tasks} tasks of one block x {rows} rows instead, balance {rows_balance:.0%}"
    )


def split_balance(shape: ConvShape, machine: Machine, parallel: str, rows: int | None, cob: int, threads: int) -> float:
    """Balance of an arbitrary split: a co split without rows is one task per block."""
    nj = output_blocks(shape, machine, cob)
    if parallel == "co" and rows is None:
        return balance(nj, threads)
    r = shape.ho if rows is None else rows
    return balance(nj * -(-shape.ho // r), threads)
