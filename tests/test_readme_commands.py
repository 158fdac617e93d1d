"""The README's `metarl train / evaluate / compare / config` commands work as pasted, twice in a
row (a newcomer reruns what they pasted): each is taken from the README's ```bash blocks, shortened
by appended settings, and run in a fresh working directory."""

from __future__ import annotations

import glob
import inspect
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from metarl import cli

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PREFIX = ".venv/bin/metarl "
COMMANDS = ("train", "evaluate", "compare", "config")
# appended to each command: a run of seconds instead of minutes
SHORT = {
    "train": [
        "--set",
        "iterations=2",
        "tasks_per_batch=2",
        "episodes_per_task=2",
        "env.horizon=10",
        "eval.every=0",
        "policy.hidden_sizes=[8,8]",
    ],
    "evaluate": ["--tasks", "2", "--episodes", "2"],
}


def readme_commands() -> list[str]:
    """The ``.venv/bin/metarl COMMAND ...`` lines of the README's ```bash blocks, backslash
    continuations joined, in README order."""
    text = README.read_text(encoding="utf-8")
    lines: list[str] = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            if line.startswith(PREFIX) and line[len(PREFIX) :].split()[0] in COMMANDS:
                lines.append(line)
    return lines


def _argv(line: str, cwd: Path) -> list[str]:
    """What the shell would pass: comments dropped, globs expanded in ``cwd`` (left as they are
    when nothing matches, as bash does), the short settings appended."""
    words = shlex.split(line, comments=True)[1:]
    argv: list[str] = []
    for word in words:
        matches = sorted(glob.glob(word, root_dir=cwd)) if glob.has_magic(word) else []
        argv += matches or [word]
    return argv + SHORT.get(argv[0], [])


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A fresh directory with the repository's .venv and experiments/ as the README assumes."""
    for name in (".venv", "experiments"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return tmp_path


def test_the_readme_shows_each_command():
    shown = {line[len(PREFIX) :].split()[0] for line in readme_commands()}
    assert shown == set(COMMANDS)


def test_readme_commands_run_twice(workdir, capsys):
    for attempt in (1, 2):
        for line in readme_commands():
            code = cli.main(_argv(line, workdir))
            captured = capsys.readouterr()
            assert code == 0, f"attempt {attempt}: `{line}` exited {code}: {captured.err[-2000:]}"


@pytest.mark.slow
def test_readme_commands_run_twice_in_a_shell(workdir):
    """The same through bash, as pasted (one process per command)."""
    for attempt in (1, 2):
        for line in readme_commands():
            command = line + " " + shlex.join(SHORT.get(line[len(PREFIX) :].split()[0], []))
            proc = subprocess.run(
                ["bash", "-c", command],
                cwd=workdir,
                env={**os.environ, "OMP_NUM_THREADS": "1"},
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert proc.returncode == 0, f"attempt {attempt}: `{command}`: {proc.stderr[-2000:]}"


def test_run_bench_defaults_to_the_cli_default():
    """README: `metarl bench` writes to runs/bench unless --out; so does run_bench() from Python
    (only `make bench` writes the committed results/benchmarks)."""
    from metarl.bench.run import run_bench

    default = inspect.signature(run_bench).parameters["out_dir"].default
    assert str(default) == "runs/bench"
    args = cli.build_parser().parse_args(["bench"])
    assert str(args.out) == str(default)
