"""Attack a segmentation model with MedIS: ``python attack.py [group=option] [key=value]``.

Configs: conf/attack.yaml; the work happens in medis.lightning.attack_job.run_attack_job.
"""

import hydra
from omegaconf import DictConfig

from medis.runtime.cli import run_hydra_main
from medis.runtime.cpu_allocator import tune_cpu_allocator
from medis.errors import exit_on_user_error
from medis.lightning.attack_job import run_attack_job


@hydra.main(version_base="1.3", config_path="conf", config_name="attack")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    tune_cpu_allocator()  # reuse freed large CPU blocks (MEDIS_CPU_ALLOCATOR=default: off)
    run_attack_job(cfg)


if __name__ == "__main__":
    run_hydra_main(main)  # unparsable values quoted, one-line errors
