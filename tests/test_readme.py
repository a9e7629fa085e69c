"""The README's Python example runs as written; every command the docs quote parses."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_readme_has_one_short_python_example():
    blocks = readme_python_blocks()
    assert len(blocks) == 1
    code = [ln for ln in blocks[0].splitlines() if ln.strip()]
    assert len(code) <= 15, len(code)


@pytest.mark.cli
def test_readme_python_example_runs(tmp_path):
    (tmp_path / "example.py").write_text(readme_python_blocks()[0])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "AMC_CACHE_DIR": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    m = re.search(r"dense ([\d.]+)%, pruned ([\d.]+)%", r.stdout)
    assert m and float(m.group(1)) > 80 and float(m.group(2)) > 50, r.stdout
    assert (tmp_path / "runs/api/search/best_policy.json").is_file()
    assert (tmp_path / "runs/api/pruned.onnx").stat().st_size > 0


# ----------------------------------------------------------------- the commands the docs name

DOCS = ("README.md", "results/README.md", "results/FINDINGS.md")
PLACEHOLDER = re.compile(r"[A-Z]+|<.*>|\.\.\.|…")
FRAGMENT = ("the following arguments are required", "expected one argument")
"""Parse errors a command quoted as a fragment (``amc apply --policy``) may give."""


class _Parsed(Exception):
    """Raised by the patched ``parse_args`` once the arguments parsed: nothing runs."""


def joined_lines(text: str) -> list[tuple[int, str]]:
    """``text``'s lines with shell continuations (a trailing backslash) joined, each with the
    number of its first source line."""
    lines: list[tuple[int, str]] = []
    for i, part in enumerate(text.splitlines(), 1):
        if lines and lines[-1][1].endswith("\\"):
            lines[-1] = (lines[-1][0], lines[-1][1][:-1] + " " + part)
        else:
            lines.append((i, part))
    return lines


def doc_commands(text: str) -> list[tuple[str, list[str]]]:
    """(program, arguments) of every ``python scripts/NAME.py ...`` and ``amc COMMAND ...``
    in ``text``'s inline code and code blocks (shell comments, redirections and pipes cut)."""
    lines = re.findall(r"`([^`\n]+)`", text) + [
        ln for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
        for _, ln in joined_lines(block)]
    out = []
    for line in lines:
        line = line.split(" #")[0]
        if m := re.search(r"(?:^|\s)(?:\.venv/bin/)?python3? (scripts/\w+\.py)([^|&>;]*)", line):
            out.append((m.group(1), shlex.split(m.group(2))))
        elif m := re.search(r"(?:^|\s|/)amc ([a-z]+[^|&>;]*)", line):
            out.append(("amc", shlex.split(m.group(1))))
    return out


SHELL_VALUE = "1"
"""What a shell expansion (``"$OUT"``, ``"${DEV[@]}"``) stands for in a script's ``amc``
command: a valid number, path and name; left over as a positional, it is ignored."""


def shell_amc_commands(text: str) -> list[tuple[int, list[str]]]:
    """(line, arguments) of every ``$AMC ...`` / ``"${AMC[@]}" ...`` command of a shell
    script, continuation lines joined, every token holding a ``$`` expansion replaced by
    ``SHELL_VALUE``."""
    out: list[tuple[int, list[str]]] = []
    for i, line in joined_lines(text):
        for m in re.finditer(r'(?:\$AMC|"\$\{AMC\[@\]\}") ([a-z][^|&>;#]*)', line):
            argv = [SHELL_VALUE if "$" in t else t for t in shlex.split(m.group(1))]
            out.append((i, argv))
    return out


def parse_error(program: str, argv: list[str], run_script) -> str | None:
    """How ``program``'s own parser rejects ``argv`` (None: accepted; fragments' missing
    required arguments are accepted). Nothing runs: parsing stops the program.
    ``run_script``: the conftest fixture that calls a script's ``main``."""
    import argparse

    def run() -> None:
        if program == "amc":
            from amc.cli import build_parser

            build_parser().parse_args(argv)
        else:
            run_script(ROOT / program, argv)

    errors: list[str] = []

    def parse_args(self, args=None, namespace=None):
        _, extra = self.parse_known_args(args, namespace)
        extra = [a for a in extra if a != SHELL_VALUE]
        if extra:
            errors.append(f"unrecognized arguments: {' '.join(extra)}")
        raise _Parsed

    def error(self, message):
        errors.append(message)
        raise _Parsed

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(argparse.ArgumentParser, "parse_args", parse_args)
        mp.setattr(argparse.ArgumentParser, "error", error)
        if program == "amc":
            from amc.cli import OneLineParser

            mp.setattr(OneLineParser, "error", error)
        with contextlib.suppress(_Parsed):
            run()
    return next((e for e in errors if not any(f in e for f in FRAGMENT)), None)


def test_every_command_the_docs_name_parses(run_script):
    """Each script and ``amc`` command quoted in README.md and results/README.md exists and
    takes the options quoted with it (placeholders such as ``N`` skipped)."""
    cmds = {(prog, tuple(argv)) for doc in DOCS for prog, argv in doc_commands(
        (ROOT / doc).read_text()) if not any(PLACEHOLDER.fullmatch(a) for a in argv)}
    assert len(cmds) > 50 and any(p.startswith("scripts/") for p, _ in cmds)
    bad = {f"{p} {' '.join(a)}": why for p, a in sorted(cmds)
           if (why := (parse_error(p, list(a), run_script) if p == "amc" or (ROOT / p).is_file()
                       else "no such script"))}
    assert bad == {}


def test_every_amc_command_of_the_shell_scripts_parses(run_script):
    """The ``amc`` commands that scripts/*.sh run (the comparisons, the report, the GPU check)
    take the options they pass: a renamed option would otherwise fail hours into a benchmark
    or on a GPU machine."""
    cmds = {f"{p.name}:{line}": argv for p in sorted((ROOT / "scripts").glob("*.sh"))
            for line, argv in shell_amc_commands(p.read_text())}
    assert len(cmds) >= 15 and any(k.startswith("gpu_check.sh") for k in cmds)
    bad = {k: why for k, argv in cmds.items() if (why := parse_error("amc", argv, run_script))}
    assert bad == {}


def test_a_stale_command_is_caught(run_script):
    def error(program: str, *argv: str) -> str | None:
        return parse_error(program, list(argv), run_script)

    assert error("amc", "search", "--no-such-option") is not None
    assert "invalid int value" in error("amc", "search", "--episodes", "many")
    assert "invalid choice" in error("scripts/bench_episode.py", "--bf16", "maybe")
    assert error("amc", "apply", "--policy") is None  # a fragment
    text = ("run `python scripts/bench_episode.py --bf16 off > log` then\n```\n"
            "amc search --model x \\\n  --episodes 3  # note\n```\n")
    script = ('$AMC compare --model x \\\n    --episodes "$N" "${B[@]}" --out "$O"  # c\n'
              'step s "${AMC[@]}" search --frobnicate 3 > log\n')
    assert shell_amc_commands(script) == [
        (1, ["compare", "--model", "x", "--episodes", "1", "1", "--out", "1"]),
        (3, ["search", "--frobnicate", "3"])]
    assert error("amc", *shell_amc_commands(script)[0][1]) is None
    assert "--frobnicate" in error("amc", *shell_amc_commands(script)[1][1])
    assert doc_commands(text) == [("scripts/bench_episode.py", ["--bf16", "off"]),
                                  ("amc", ["search", "--model", "x", "--episodes", "3"])]
