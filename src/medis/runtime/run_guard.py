"""The Hydra callback that guards a run folder (``conf/hydra/default.yaml``: ``hydra.callbacks``).

Before ``train.py`` or ``attack.py`` touches a file of its run folder:

1. the config is checked (:func:`medis.config.schema.check_config`): a bad value is one line; so is
   a key added with ``+`` that nothing takes (:func:`medis.config.added_keys.check_added_keys`: a
   typo, with the nearest key it meant);
2. the folder is created and proven writable (:func:`medis.runtime.run_info.ensure_writable`): an
   unwritable, read-only or full output folder is one line naming it;
3. the folder's lock is taken (:mod:`medis.runtime.run_lock`): a second run into a folder that a live run
   holds stops with one line naming the folder and the holder, or waits ``wait_for_lock`` seconds;
4. ``resume=true`` into an attack run compares the settings that define its records with the
   stored ones (:mod:`medis.runtime.record_settings`): a difference is one line naming each key;
   a fresh attack run stores them in ``record_settings.json``;
5. only then is ``.hydra/`` (config.yaml, hydra.yaml, overrides.yaml) written, by a fresh run: a
   resumed one leaves it as the first run wrote it. Hydra would write it before any callback could
   take the lock, so ``hydra.output_subdir`` is null and this callback writes the same three files
   once the lock is held (a user who sets ``hydra.output_subdir`` gets Hydra's own copy there
   instead).

A single run locks ``hydra.run.dir`` from run start to run end; a multirun locks its sweep folder
(``multirun.yaml``) and each job its own folder for the job's duration (and ``paths.output_dir``
too, when it is set apart from Hydra's folder). Processes of a
multi-process job other than the first (``LOCAL_RANK``, ``NODE_RANK``, ``RANK`` or
``SLURM_PROCID`` above 0: Lightning's DDP children re-run the script into the same folder) neither
lock nor write ``.hydra/``: the first process holds the folder for all of them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from medis.config.added_keys import check_added_keys
from medis.config.schema import check_config
from medis.errors import DataError, exit_on_user_error
from medis.reporting.atomic import atomic_write_text
from medis.runtime.record_settings import SETTINGS_NAME, check_resume_settings, write_record_settings
from medis.runtime.run_info import ensure_writable
from medis.runtime.run_lock import RunLock, lock_run_folder

__all__ = ["HYDRA_SUBDIR", "RunGuard", "is_secondary_process"]

HYDRA_SUBDIR = ".hydra"
_RANK_VARIABLES = ("LOCAL_RANK", "NODE_RANK", "RANK", "SLURM_PROCID")


def is_secondary_process() -> bool:
    """Whether this is a process of a multi-process job other than its first one."""
    for name in _RANK_VARIABLES:
        try:
            if int(os.environ.get(name, "0")) > 0:
                return True
        except ValueError:
            continue
    return False


def _task_config(config: DictConfig) -> DictConfig:
    """The job's config without its ``hydra`` node (what the task function receives)."""
    task = OmegaConf.create(OmegaConf.to_container(config, resolve=False))
    with read_write(task), open_dict(task):
        task.pop("hydra", None)
    return task


def _job_folders(config: DictConfig) -> list[Path]:
    """The folders a job writes: Hydra's job folder and, when set apart, ``paths.output_dir``."""
    folders = [Path(config.hydra.runtime.output_dir)]
    output = OmegaConf.select(config, "paths.output_dir", default=None)
    if output is not None and Path(output).resolve() != folders[0].resolve():
        folders.append(Path(output))
    return folders


def _wait(config: DictConfig) -> float:
    value = config.get("wait_for_lock", 0)
    return float(value or 0)


def _take(folder: Path, config: DictConfig) -> RunLock:
    """Check the folder is writable, then lock it (one-line errors)."""
    ensure_writable(folder)
    try:
        return lock_run_folder(folder, wait=_wait(config))
    except OSError as err:
        raise DataError(f"cannot lock the run folder {folder}: {err.strerror or err}") from None


class RunGuard(Callback):
    """Config check, writability check and one writer per run folder (see the module docstring)."""

    def __init__(self) -> None:
        self._held: list[tuple[str, RunLock]] = []  # (folder, lock) for each take, released in reverse

    def __getstate__(self) -> dict[str, Any]:  # launchers pickle callbacks into job processes: no locks
        return {"_held": []}

    def _lock(self, folder: Path, config: DictConfig) -> None:
        if not is_secondary_process():
            self._held.append((str(folder), _take(folder, config)))

    def _release(self, folder: Path) -> None:
        for index in range(len(self._held) - 1, -1, -1):
            if self._held[index][0] == str(folder):
                self._held.pop(index)[1].release()
                return

    @exit_on_user_error
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)
        task = _task_config(config)
        check_added_keys(task, list(config.hydra.overrides.task))
        check_config(task)
        self._lock(Path(config.hydra.run.dir), config)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._release(Path(config.hydra.run.dir))

    @exit_on_user_error
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)
        self._lock(Path(config.hydra.sweep.dir), config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._release(Path(config.hydra.sweep.dir))

    @exit_on_user_error
    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        task = _task_config(config)
        check_added_keys(task, list(config.hydra.overrides.task))
        check_config(task)
        for folder in _job_folders(config):
            self._lock(folder, config)
        if is_secondary_process():
            return
        resume = bool(task.get("resume", False))
        if "attack" in task and "target" in task:  # an attack run: its records' settings
            run_dir = Path(OmegaConf.select(config, "paths.output_dir", default=config.hydra.runtime.output_dir))
            if resume:
                check_resume_settings(run_dir, task)  # before any file of the run is touched
            if not resume or not (run_dir / SETTINGS_NAME).exists():
                write_record_settings(run_dir, task)
        if config.hydra.output_subdir is not None:
            return
        hydra_dir = Path(config.hydra.runtime.output_dir) / HYDRA_SUBDIR
        if resume and (hydra_dir / "config.yaml").exists():
            return  # .hydra/ stays as the first run wrote it
        try:
            atomic_write_text(hydra_dir / "config.yaml", OmegaConf.to_yaml(task))
            atomic_write_text(hydra_dir / "hydra.yaml", OmegaConf.to_yaml(HydraConfig.instance().cfg))
            atomic_write_text(hydra_dir / "overrides.yaml", OmegaConf.to_yaml(config.hydra.overrides.task))
        except OSError as err:
            raise DataError(f"cannot write {hydra_dir}: {err.strerror or err}") from None

    def on_job_end(self, config: DictConfig, job_return: Any = None, **kwargs: Any) -> None:
        for folder in reversed(_job_folders(config)):
            self._release(folder)
