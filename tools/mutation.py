"""Mutation testing of the core modules with mutmut, one module at a time, in scratch copies.

    .venv/bin/python tools/mutation.py run [MODULE ...]   # default: all, in priority order
    .venv/bin/python tools/mutation.py report             # results/mutation/report.md

``run`` copies the committed tree (without results/) and untracked files under tests/ to
``--workdir``/MODULE, writes there a setup.cfg whose [mutmut] section is the
repository's with ``only_mutate`` set to the module and the test selection set to the module's
fast unit tests (TESTS below), and runs ``mutmut run --max-children 1`` in it: mutmut's files
never land in the repository. Each mutant runs only the selected tests that reach the mutated
function, fastest first (tests/mutmut_order.py), stopping at the first failure. The outcome of
every mutant (and the diff of every one not killed) goes to results/mutation/raw/MODULE.json.

``report`` reads raw/*.json and results/mutation/equivalent.yaml (mutant name → why it cannot
change behaviour) and writes results/mutation/report.md: per module killed / survived /
equivalent / timeout / no tests / not checked, the score killed / (total - equivalent), each
equivalent mutant with its reason and each other survivor with its diff.
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml
from mutation_report import PRIORITY  # the modules, in the order they are run

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "mutation"
ALWAYS = ("tests/test_pinned_formulas.py", "tests/test_mutants.py")
TESTS = {
    "returns": ("tests/test_returns.py", "tests/test_averaging_parts.py"),
    "policies": ("tests/test_policy_sampler.py", "tests/test_curvature.py"),
    "adaptation": (
        "tests/test_meta_gradients.py",
        "tests/test_curvature.py",
        "tests/test_averaging_parts.py",
    ),
    "meta_gradients": (
        "tests/test_meta_gradients.py",
        "tests/test_analytic.py",
        "tests/test_curvature.py",
        "tests/test_meta_optimizers.py",
        "tests/test_averaging_parts.py",
    ),
    "meta_optimizers": ("tests/test_meta_optimizers.py", "tests/test_averaging_parts.py"),
    "meta_learner": ("tests/test_meta_optimizers.py", "tests/test_learning.py"),
    "sampler": (
        "tests/test_policy_sampler.py",
        "tests/test_meta_gradients.py",
        "tests/test_sampler_info.py",
        "tests/test_averaging_parts.py",
    ),
}
# mutmut's exit codes (mutmut/stats.py) grouped as the report counts them
STATUS = {
    1: "killed",
    3: "killed",
    0: "survived",
    5: "no tests",
    33: "no tests",
    None: "not checked",
}
STATUS.update(dict.fromkeys((36, -24, 24, 152, 255), "timeout"))


def _git(*args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True).stdout


def _set_timeout_multiplier(scratch: Path, multiplier: float | None) -> None:
    """mutmut stops a mutant's tests after (estimated seconds + 1) × multiplier of wall time
    (default 15): on cores shared with other work a test that only waits for the CPU times out,
    and a timeout counts as detected; a larger multiplier makes the verdict a real one."""
    if multiplier is None:
        return
    cfg = configparser.ConfigParser()
    cfg.read(scratch / "setup.cfg")
    cfg["mutmut"]["timeout_multiplier"] = str(float(multiplier))
    with open(scratch / "setup.cfg", "w") as f:
        cfg.write(f)


def _prepare(module: str, workdir: Path) -> Path:
    """The committed tree (HEAD, without results/) plus untracked files under tests/: mutation
    measures committed code, not someone's edit in progress; a new test file counts at once."""
    scratch = workdir / module
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", "HEAD", ":(exclude)results"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(scratch)], input=archive, check=True)
    untracked = _git("ls-files", "--others", "--exclude-standard", "-z", "tests").decode()
    for name in filter(None, untracked.split("\0")):
        shutil.copy2(ROOT / name, scratch / name)
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    section = cfg["mutmut"]
    section["only_mutate"] = f"\nmetarl/{module}.py"
    section["pytest_add_cli_args_test_selection"] = "\n" + "\n".join(TESTS[module] + ALWAYS)
    with open(scratch / "setup.cfg", "w") as f:
        cfg.write(f)
    return scratch


def _export(module: str, scratch: Path, seconds: float) -> dict:
    meta = json.loads((scratch / "mutants" / "metarl" / f"{module}.py.meta").read_text())
    status = {
        name: STATUS.get(code, "suspicious") for name, code in meta["exit_code_by_key"].items()
    }
    diffs = {}
    shown = ("survived", "no tests", "suspicious")  # the diffs the report lists
    if any(s in shown for s in status.values()):
        cwd = os.getcwd()
        os.chdir(scratch)
        try:
            from mutmut.__main__ import get_diff_for_mutant

            for name, s in status.items():
                if s in shown:
                    diffs[name] = get_diff_for_mutant(name, path=Path(f"metarl/{module}.py"))
        finally:
            os.chdir(cwd)
    checked = sum(s != "not checked" for s in status.values())
    data = {
        "module": f"metarl/{module}.py",
        "tests": list(TESTS[module] + ALWAYS),
        "seconds": round(seconds, 1),
        "seconds_per_mutant": round(seconds / checked, 2) if checked else None,
        "status": dict(sorted(status.items())),
        "diffs": dict(sorted(diffs.items())),
    }
    (OUT / "raw").mkdir(parents=True, exist_ok=True)
    (OUT / "raw" / f"{module}.json").write_text(json.dumps(data, indent=1, ensure_ascii=False))
    return data


def _mutmut() -> Path:
    """mutmut next to this interpreter (make mutation installs it into .venv)."""
    mutmut = Path(sys.executable).with_name("mutmut")
    if not mutmut.exists():
        raise SystemExit(f"{mutmut} not found: run `make mutation` or pip install mutmut==3.8.1")
    return mutmut


def run(
    modules: list[str],
    workdir: Path,
    timeout_s: float | None,
    timeout_multiplier: float | None = None,
) -> None:
    mutmut = _mutmut()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for module in modules:
        scratch = _prepare(module, workdir)
        _set_timeout_multiplier(scratch, timeout_multiplier)
        print(f"== {module}: mutmut in {scratch}", flush=True)
        start = time.monotonic()
        try:
            subprocess.run(
                [str(mutmut), "run", "--max-children", "1"],
                cwd=scratch,
                env=env,
                timeout=timeout_s,
                stdout=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired:
            print(f"   stopped after {timeout_s} s: the unchecked mutants stay 'not checked'")
        data = _export(module, scratch, time.monotonic() - start)
        counts: dict[str, int] = {}
        for s in data["status"].values():
            counts[s] = counts.get(s, 0) + 1
        print(f"   {counts}, {data['seconds_per_mutant']} s per mutant", flush=True)


CODE = {"killed": 1, "timeout": 36, "survived": 0, "no tests": 33}  # a status's exit code


def rerun(
    module: str,
    workdir: Path,
    survivors_only: bool = False,
    timeouts: bool = False,
    timeout_multiplier: float | None = None,
) -> None:
    """Run again every mutant not killed (with ``survivors_only``, not those never checked) in a
    new scratch made as ``run`` makes it (HEAD's code, so a fix elsewhere in the package
    counts), with the selected test files as they are now in the working tree; the other
    mutants keep their outcome in raw/MODULE.json, which is valid only while the module's code
    is unchanged (same mutant names, checked)."""
    skip = {"killed", *([] if timeouts else ["timeout"])}
    skip |= {"not checked"} if survivors_only else set()
    seeded = json.loads((OUT / "raw" / f"{module}.json").read_text())["status"]
    names = [n for n, s in seeded.items() if s not in skip]
    scratch = _prepare(module, workdir)
    meta_path = scratch / "mutants" / "metarl" / f"{module}.py.meta"
    if survivors_only:  # an equivalent mutant survives again at the cost of all its tests
        equivalent = yaml.safe_load((OUT / "equivalent.yaml").read_text()) or {}
        names = [n for n in names if n not in equivalent]
    for name in (*TESTS[module], *ALWAYS, "tests/mutmut_order.py"):
        shutil.copy2(ROOT / name, scratch / name)
    _set_timeout_multiplier(scratch, timeout_multiplier)
    print(f"== {module}: {len(names)} mutants again in {scratch}", flush=True)
    start = time.monotonic()
    if names:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        mutmut = _mutmut()
        cmd = [str(mutmut), "run", "--max-children", "1", *names]
        done = subprocess.run(cmd, cwd=scratch, env=env, capture_output=True, text=True)
        if "failed to collect stats" in done.stdout + done.stderr:
            raise SystemExit(
                f"mutmut could not run the selected tests on HEAD in {scratch} (a failing test?): "
                "run them there with pytest to see why"
            )
    meta = json.loads(meta_path.read_text())  # the others keep the outcome of raw/'s run
    if set(meta["exit_code_by_key"]) != set(seeded):
        raise SystemExit(f"metarl/{module}.py changed since raw/{module}.json: run it again")
    for name, status in seeded.items():
        if name not in names:
            meta["exit_code_by_key"][name] = CODE.get(status)
    meta_path.write_text(json.dumps(meta))
    previous = OUT / "raw" / f"{module}.json"
    seconds = json.loads(previous.read_text())["seconds"] if previous.exists() else 0.0
    data = _export(module, scratch, seconds)
    data["rerun_seconds"] = round(time.monotonic() - start, 1)
    previous.write_text(json.dumps(data, indent=1, ensure_ascii=False))


def _add_timeout_multiplier(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout-multiplier",
        type=float,
        default=None,
        help="mutmut's wall-time limit per mutant in units of its tests' time (default 15)",
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="mutate modules in scratch copies, write raw/MODULE.json")
    p_run.add_argument("modules", nargs="*", help=f"default, in this order: {' '.join(PRIORITY)}")
    p_run.add_argument("--workdir", type=Path, default=Path("/tmp/metarl-mutation"))
    p_run.add_argument("--timeout-s", type=float, default=None, help="per module")
    _add_timeout_multiplier(p_run)
    p_exp = sub.add_parser("export", help="write raw/MODULE.json from a (partial) run's scratch")
    p_exp.add_argument("modules", nargs="+")
    p_exp.add_argument("--workdir", type=Path, default=Path("/tmp/metarl-mutation"))
    p_exp.add_argument("--seconds", type=float, default=0.0, help="time the run took")
    p_re = sub.add_parser("rerun", help="check a module's surviving mutants again (new tests)")
    p_re.add_argument("modules", nargs="+")
    p_re.add_argument(
        "--survivors-only",
        action="store_true",
        help="only survivors not listed in equivalent.yaml (not the unchecked ones)",
    )
    p_re.add_argument("--timeouts", action="store_true", help="also the mutants that timed out")
    _add_timeout_multiplier(p_re)
    p_re.add_argument("--workdir", type=Path, default=Path("/tmp/metarl-mutation"))
    sub.add_parser("report", help="write results/mutation/report.md from raw/ and equivalent.yaml")
    args = parser.parse_args(argv)
    if args.command == "run":
        unknown = sorted(set(args.modules) - set(PRIORITY))
        if unknown:
            parser.error(f"unknown modules {unknown}: choose from {' '.join(PRIORITY)}")
        run(args.modules or list(PRIORITY), args.workdir, args.timeout_s, args.timeout_multiplier)
    elif args.command == "rerun":
        for module in args.modules:
            rerun(
                module,
                args.workdir,
                args.survivors_only,
                args.timeouts,
                args.timeout_multiplier,
            )
    elif args.command == "export":
        for module in args.modules:
            _export(module, args.workdir / module, args.seconds)
    else:
        from mutation_report import write_report

        print(write_report(OUT))


if __name__ == "__main__":
    main()
