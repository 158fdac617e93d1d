"""Apply each mutation named in issue 20 ("Why") to a scratch copy of the committed tree and run
the default-suite tests that should catch it; write results/mutation/issue_mutations.md.

    .venv/bin/python tools/check_issue_mutations.py [--workdir /tmp/metarl-issue-mutations]

Each mutation is a literal replacement that must match exactly once (the script stops if the
source moved on). A mutation is caught when at least one of its tests fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "mutation" / "issue_mutations.md"

# (what the issue says, file, original text, mutated text, tests that should catch it)
MUTATIONS = [
    (
        "mean meta-gradient negated in MetaLearner.step",
        "metarl/meta_learner.py",
        "self.optimizer.step(self.params, mean_grad, problem)",
        "self.optimizer.step(self.params, {k: -g for k, g in mean_grad.items()}, problem)",
        ["tests/test_learning.py"],
    ),
    (
        "outer advantages negated",
        "metarl/meta_learner.py",
        "outer_advantages = self.advantage(outer_batch)",
        "outer_advantages = -self.advantage(outer_batch)",
        ["tests/test_learning.py"],
    ),
    (
        "KL direction flipped in MetaProblem._kl_between",
        "metarl/meta_gradients.py",
        "self._task_mean(self.inner.policy.kl(old, new, batch.obs))",
        "self._task_mean(self.inner.policy.kl(new, old, batch.obs))",
        ["tests/test_pinned_formulas.py", "tests/test_meta_optimizers.py"],
    ),
    (
        "policy.kl's arguments swapped",
        "metarl/policies.py",
        "gaussian_kl(mu0, self.log_std(old, mu0), mu1, self.log_std(new, mu1))",
        "gaussian_kl(mu1, self.log_std(new, mu1), mu0, self.log_std(old, mu0))",
        ["tests/test_pinned_formulas.py", "tests/test_policy_sampler.py"],
    ),
    (
        "AdvantageSettings ignores normalize (always normalizes)",
        "metarl/adaptation.py",
        "            self.normalize,\n",
        "            True,\n",
        ["tests/test_pinned_formulas.py", "tests/test_meta_gradients.py"],
    ),
    (
        "AdvantageSettings ignores normalize (never normalizes)",
        "metarl/adaptation.py",
        "            self.normalize,\n",
        "            False,\n",
        ["tests/test_pinned_formulas.py", "tests/test_meta_gradients.py"],
    ),
    (
        "config default hfmaml.reuse_inner_batch: true",
        "metarl/config.py",
        "reuse_inner_batch: bool = False",
        "reuse_inner_batch: bool = True",
        ["tests/test_pinned_formulas.py", "tests/test_config.py"],
    ),
    (
        "HF-MAML's δ without its 1/‖u‖ scaling",
        "metarl/meta_gradients.py",
        "deltas = delta_scale / norms.clamp_min(1e-12)",
        "deltas = torch.full_like(norms, delta_scale)",
        ["tests/test_pinned_formulas.py", "tests/test_meta_gradients.py"],
    ),
    (
        "TRPO's KL averaged over all padded steps (masks ignored)",
        "metarl/meta_gradients.py",
        "return (per_step * weights).sum(dim=(1, 2)).mean()",
        "return per_step.mean()",
        [
            "tests/test_pinned_formulas.py",
            "tests/test_meta_gradients.py",
            "tests/test_meta_optimizers.py",
        ],
    ),
    (
        "per-step weights count padded steps (early termination ignored)",
        "metarl/returns.py",
        "return m / m.sum(dim=(1, 2), keepdim=True).clamp(min=1.0)",
        "return m / (m.shape[1] * m.shape[2])",
        ["tests/test_returns.py", "tests/test_meta_gradients.py"],
    ),
    (
        "inner gradient clip scales up tasks below the threshold",
        "metarl/adaptation.py",
        "return (max_norm / norms.clamp_min(1e-12)).clamp(max=1.0)",
        "return max_norm / norms.clamp_min(1e-12)",
        ["tests/test_meta_gradients.py"],
    ),
    (
        "inner gradient clip never applied",
        "metarl/adaptation.py",
        "scale = clip_scale(norms, grad_clip)",
        "scale = clip_scale(norms, None)",
        ["tests/test_meta_gradients.py"],
    ),
    (
        "SGD / Adam update never applied",
        "metarl/meta_optimizers.py",
        "            self.optimizer.step()\n",
        "            pass\n",
        ["tests/test_pinned_formulas.py", "tests/test_meta_optimizers.py"],
    ),
]


def _scratch(workdir: Path) -> Path:
    base = workdir / "clean"
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", "HEAD", ":(exclude)results"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
    return base


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/metarl-issue-mutations"))
    args = parser.parse_args(argv)
    base = _scratch(args.workdir)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": "."}
    rows = []
    for what, path, old, new, tests in MUTATIONS:
        text = (base / path).read_text()
        if text.count(old) != 1:
            print(f"{what}: {old!r} occurs {text.count(old)} times in {path}", file=sys.stderr)
            return 2
        (base / path).write_text(text.replace(old, new))
        start = time.monotonic()
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                cwd=base,
                env=env,
                capture_output=True,
                text=True,
            )
        finally:
            (base / path).write_text(text)
        summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr
        lines = proc.stdout.splitlines()
        failed = sorted({ln.split(" ")[1].split("[")[0] for ln in lines if ln[:7] == "FAILED "})
        caught = proc.returncode == 1 and bool(failed)
        rows.append((what, path, caught, summary, failed, time.monotonic() - start))
        print(f"{'caught' if caught else 'MISSED'}: {what} ({summary})", flush=True)
    out = [
        "# The mutations listed in issue 20, each applied alone",
        "",
        "Generated by `tools/check_issue_mutations.py` on the committed tree; each mutation is",
        "applied to a scratch copy, the listed default-suite tests run, and the source restored.",
        "",
        "| mutation | file | caught | pytest | failing tests |",
        "|---|---|---|---|---|",
    ]
    for what, path, caught, summary, failed, _ in rows:
        names = ", ".join(f"`{f.split('::')[-1]}`" for f in failed[:4])
        more = f" and {len(failed) - 4} more" if len(failed) > 4 else ""
        out.append(
            f"| {what} | `{path}` | {'yes' if caught else '**no**'} | {summary} | {names}{more} |"
        )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(out) + "\n")
    return 0 if all(r[2] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
