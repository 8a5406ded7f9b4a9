"""Robustness curves and the checks that a robustness number is real (``attack.py experiment=robustness_curve``).

:mod:`.worst_case` runs an attack (the cascade) on a set of images and keeps each image's worst case;
:mod:`.curve` sweeps the radius; :mod:`.checks` runs the checks of Athalye, Carlini, Wagner (ICML
2018) and Carlini et al. ("On Evaluating Adversarial Robustness", 2019); :mod:`.report` writes the
table, the plot and ``checks.json``.
"""
