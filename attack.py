"""Attack a segmentation model with MedIS: ``python attack.py [group=option] [key=value]``.

Configs: conf/attack.yaml; the work happens in medis.lightning.attack_job.run_attack_job, or, for a
config with a ``curve`` node (``experiment=robustness_curve``), in
medis.lightning.robustness_job.run_robustness_job. Both are imported only once Hydra's run guard
(medis.runtime.run_guard) has checked every config value, so a typo is answered in about two
seconds rather than six.
"""

import hydra
from omegaconf import DictConfig

import medis.config.resolvers  # noqa: F401  (registers the config resolvers before Hydra composes)
from medis.runtime.cli import run_hydra_main
from medis.runtime.cpu_allocator import tune_cpu_allocator
from medis.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path="conf", config_name="attack")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    tune_cpu_allocator()  # reuse freed large CPU blocks (MEDIS_CPU_ALLOCATOR=default: off)
    if cfg.get("curve") is not None:  # experiment=robustness_curve: the cascade at several eps, and its checks
        from medis.lightning.robustness_job import run_robustness_job

        run_robustness_job(cfg)
    else:
        from medis.lightning.attack_job import run_attack_job

        run_attack_job(cfg)


if __name__ == "__main__":
    run_hydra_main(main)  # unparsable values quoted, one-line errors
