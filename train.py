"""Train a segmentation network with PraNet's recipe: ``python train.py [group=option] [key=value]``.

Configs: conf/train.yaml; the work happens in medis.lightning.train_job.run_training, imported only
once Hydra's run guard (medis.runtime.run_guard) has checked every config value, so a typo is
answered in about two seconds.
"""

import hydra
from omegaconf import DictConfig

import medis.config.resolvers  # noqa: F401  (registers the config resolvers before Hydra composes)
from medis.runtime.cli import run_hydra_main
from medis.runtime.cpu_allocator import tune_cpu_allocator
from medis.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
@exit_on_user_error
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the best validation Dice (for sweepers)."""
    tune_cpu_allocator()  # reuse freed large CPU blocks (MEDIS_CPU_ALLOCATOR=default: off)
    from medis.lightning.train_job import run_training

    return run_training(cfg)["best_val_dice"]


if __name__ == "__main__":
    run_hydra_main(main)  # unparsable values quoted, one-line errors
