"""Every command in a ```bash block of README.md and docs/*.md runs as written.

The commands run in order, in one workspace folder that looks like a fresh clone to them (the
repository's entry points, configs, Makefile and virtual environment linked in), through bash, so
globs, quotes and Makefile variables behave as in a user's shell. Only size-limiting overrides are
added (fewer and smaller synthetic images, fewer epochs and steps, one test batch; DataLoader
settings stay the defaults), and placeholders are filled the way a user fills them (``<time>``: the
newest run folder; ``<ckpt>``: the demo checkpoint). A command that cannot run on a CPU machine
without network, real data or a cluster is listed in :data:`NOT_RUN` with the reason; every other
command must run, and a new command in the docs fails this test until it is either runnable or
listed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ..entry_points import REPO

pytestmark = pytest.mark.docs

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINKED = (".venv", "attack.py", "train.py", "conf", "Makefile", "pyproject.toml", "src")

NOT_RUN = {
    'TORCH_SPEC="torch==2.13.0 --index-url': "a CUDA wheel index (network)",
    "make setup": "what CI itself runs first (make test depends on it)",
    "make test": "the test suite, which runs this test",
    "train.py experiment=isic_transfer": "needs the real ISIC 2018 set and the official PraNet-19.pth",
    "hydra/launcher=slurm": "needs a SLURM cluster",
    "wandb sync": "uploads to a W&B server (login and network)",
    "wandb leet outputs": "an interactive terminal UI (needs a TTY)",
}
"""Command fragment -> why it is not run here. Matched against the command text."""

TRAIN = "data.synthetic.n=24 data.synthetic.size=64 model.input_size=64 trainer.max_epochs=1"
ATTACK = ("data.synthetic.n=24 data.synthetic.size=64 model.input_size=64 attack.budget.steps=2 "
          "trainer.limit_test_batches=1 data.eval_batch_size=4")
SIZE_LIMITS = [
    # (command fragment, what replaces it); applied in order, first match only
    ("make demo", f'make demo TRAIN_ARGS="{TRAIN}" ATTACK_ARGS="{ATTACK}"'),
    ("--n 300 --size 192", "--n 24 --size 64"),
]
CURVE = "curve.images=2 'curve.eps=[2,4]' attack.members.medis.budget.steps=1 'curve.checks.seeds=[1]'"
SIZE_SUFFIX = [("train.py", TRAIN), ("attack.py data=isic2018", ATTACK.replace("data.synthetic.n=24 data.synthetic.size=64 ", "")),
               ("experiment=robustness_curve", f"{ATTACK} {CURVE}"), ("attack.py", ATTACK)]
"""Overrides appended to a command that contains the fragment (first match)."""


def commands(page: Path) -> list[str]:
    """The commands of a page's ```bash blocks: continuation lines joined, comments dropped."""
    found = []
    for block in re.findall(r"```(?:bash|sh)\n(.*?)```", page.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                found.append(re.sub(r"\s+", " ", line))
    return found


def newest(folder: Path) -> str:
    runs = sorted(p for p in folder.iterdir() if p.is_dir())
    assert runs, f"no run folder under {folder}"
    return runs[-1].name


def filled(command: str, workspace: Path) -> str:
    """``command`` with its placeholders filled and its size-limiting overrides added."""
    for fragment, replacement in SIZE_LIMITS:
        if fragment in command:
            command = command.replace(fragment, replacement)
            break
    for fragment, suffix in SIZE_SUFFIX:
        if fragment in command:
            command = f"{command} {suffix}"
            break
    if "outputs/train/runs/<time>" in command:
        command = command.replace("<time>", newest(workspace / "outputs" / "train" / "runs"))
    if "outputs/attack/multiruns/<time>" in command:
        command = command.replace("<time>", newest(workspace / "outputs" / "attack" / "multiruns"))
    command = command.replace("<ckpt>", "outputs/demo/pranet_lite_demo.ckpt")
    return command.replace('"/data/my data/dérmato"', f'"{workspace}/my data/dérmato"')


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder that looks like a clone with `make setup` done: entry points, configs, Makefile and
    .venv linked from the repository; data and outputs its own. Real-layout data for the command
    that reads ISIC 2018 from a path with a space and an accent: synthetic, in that layout."""
    root = tmp_path_factory.mktemp("clone")
    for name in LINKED:
        (root / name).symlink_to(REPO / name)
    subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-m", "medis.data.synthetic", "--kind", "isic2018",
                    "--out", str(root / "my data" / "dérmato"), "--n", "20", "--size", "64"], check=True,
                   capture_output=True, cwd=root, timeout=300)
    return root


ALL = [(page, command) for page in PAGES for command in commands(page)]


def test_the_docs_have_commands() -> None:
    assert len(ALL) >= 15 and any("hydra/launcher=joblib" in command for _, command in ALL)


@pytest.mark.parametrize("page,command", ALL, ids=[f"{p.name}:{c[:60]}" for p, c in ALL])
def test_command_runs_as_written(page: Path, command: str, workspace: Path) -> None:
    reason = next((why for fragment, why in NOT_RUN.items() if fragment in command), None)
    if reason is not None:
        pytest.skip(f"not run here: {reason}")
    line = filled(command, workspace)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDIS_", "PYTEST"))}
    done = subprocess.run(["bash", "-c", line], cwd=workspace, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, f"{page.name}: {line}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr, done.stderr[-3000:]


def test_not_run_list_is_current() -> None:
    """Every NOT_RUN entry still matches a command (no stale excuses)."""
    for fragment in NOT_RUN:
        assert any(fragment in command for _, command in ALL), fragment
    assert shutil.which("bash")
