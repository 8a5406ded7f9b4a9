"""MedIS: adversarial attacks on medical image segmentation.

Reproduces and extends Shukla, Gupta, Gupta, "Exploring the feasibility of adversarial attacks on
medical image segmentation", Multimedia Tools and Applications, 2023
(doi:10.1007/s11042-023-15575-8).
"""

__version__ = "0.1.0"
