"""``--device cuda`` on a machine without CUDA: every command that has the option (and the
distributed fine-tune) ends with one line and exit code 2 before it reads or writes
anything."""

from __future__ import annotations

import argparse

import pytest
import torch

from amc.cli import build_parser, main

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


def _commands_with_device() -> dict[str, list[str]]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: [a.option_strings[0] for a in p._actions if a.required]
            for name, p in sub.choices.items() if "--device" in p._option_string_actions}


def test_the_commands_with_the_option():
    # the option is declared once (RunConfig) and reaches every command that runs networks
    assert {"eval", "search", "finetune", "compare", "baseline", "apply", "export",
            "report"} <= set(_commands_with_device())


@pytest.mark.parametrize("command, extra", [
    *[(c, []) for c in sorted(_commands_with_device())],
    ("finetune", ["--workers", "2"]),  # refused before Ray starts
])
def test_cuda_without_cuda_is_one_line(command, extra, tmp_path, capsys):
    required = _commands_with_device()[command]
    argv = [command, "--device", "cuda", *extra]
    for i, opt in enumerate(required):
        argv += [opt, str(tmp_path / f"x{i}")]
    if "--out" not in required:
        argv += ["--out", str(tmp_path / "out")] if command != "eval" else []
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("amc: error: --device cuda")
    assert list(tmp_path.iterdir()) == []  # nothing read, nothing written
