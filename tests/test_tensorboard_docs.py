"""docs/tensorboard.md documents every tag a run writes, and only tags the code writes."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from metarl.config import load_config
from metarl.train import train

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs/tensorboard.md"
TINY = [
    "tasks_per_batch=2",
    "episodes_per_task=2",
    "env.horizon=5",
    "policy.hidden_sizes=[4]",
    "iterations=1",
    "eval.every=1",
    "eval.num_tasks=2",
    "eval.episodes_per_task=1",
    "eval.steps=2",
    "checkpoint.every=0",
    "sampler.env_threads=0",
    "sampler.torch_threads=1",
]
# between them, these runs write every conditional tag (TRPO's improvement only when its line
# search accepts a step, which a one-iteration run need not do)
RUNS = {
    "maml-trpo": ["algorithm=maml", "meta_optimizer=trpo", "inner.steps=2", "trpo.fvp_tasks=0.5"],
    "hfmaml-theory": ["algorithm=hfmaml", "meta_optimizer=sgd", "outer.step_rule=theory"],
    "pretrained-adam": ["algorithm=pretrained", "meta_optimizer=adam"],
}


def documented_tags() -> list[str]:
    """The first column of the tag table (backquoted)."""
    tags = re.findall(r"^\| `([^`]+)` \|", DOC.read_text(encoding="utf-8"), flags=re.MULTILINE)
    assert tags, "no tag table in docs/tensorboard.md"
    return tags


def _pattern(tag: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(tag).replace(r"\{j\}", r"\d+").replace(r"\*", r"[^/]+") + "$")


def _written(run_dir: Path) -> set[str]:
    tags: set[str] = set()
    for directory in (run_dir, run_dir / "by_env_steps"):
        events = EventAccumulator(str(directory))
        events.Reload()
        found = events.Tags()
        tags.update(found["scalars"])
        tags.update(t.removesuffix("/text_summary") for t in found["tensors"])
    return tags


@pytest.fixture(scope="module")
def written_tags(tmp_path_factory) -> dict[str, set[str]]:
    out = {}
    for name, overrides in RUNS.items():
        cfg = load_config(ROOT / "experiments/configs/navigation2d.yaml", TINY + overrides)
        run_dir = tmp_path_factory.mktemp("tb") / name
        assert train(cfg, run_dir, stdout=io.StringIO()).status == "completed"
        out[name] = _written(run_dir)
    return out


def test_every_written_tag_is_documented(written_tags):
    patterns = [_pattern(tag) for tag in documented_tags()]
    for name, tags in written_tags.items():
        missing = sorted(t for t in tags if not any(p.match(t) for p in patterns))
        assert not missing, f"{name} writes tags missing from docs/tensorboard.md: {missing}"


def test_every_documented_tag_is_written_by_the_code(written_tags):
    written = set().union(*written_tags.values())
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "metarl").rglob("*.py"))
    for tag in documented_tags():
        if any(_pattern(tag).match(t) for t in written):
            continue
        # conditional tags these runs need not write must at least be in the code
        assert f'"{tag}"' in source, f"docs/tensorboard.md documents {tag!r}, never written"


def test_reference_learners_write_no_inner_tags(written_tags):
    assert not any(
        t.startswith(("inner/", "returns/step_")) for t in written_tags["pretrained-adam"]
    )
