"""The console command exists, lists its subcommands and fails cleanly."""

from __future__ import annotations

import subprocess
import sys


def test_module_entry_point_lists_bench():
    done = subprocess.run([sys.executable, "-m", "directconv", "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    assert "bench" in done.stdout


def test_unknown_subcommand_is_a_usage_error():
    done = subprocess.run([sys.executable, "-m", "directconv", "frobnicate"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "invalid choice: 'frobnicate'" in done.stderr
