"""Models: PraNet (official layout) on Res2Net, a light PraNet, U-Net, checkpoints, and the
differentiable front end that turns any of them into a victim of the [0, 1] image at original size."""

from medis.models.build import build_victim
from medis.models.frontend import BPDA, Victim, VictimOutput
from medis.models.pranet import PraNet, pranet_lite
from medis.models.unet import UNet

__all__ = ["BPDA", "PraNet", "UNet", "Victim", "VictimOutput", "build_victim", "pranet_lite"]
