from .emov1 import EMO
from .emov2 import EMOv2
from .uemo import UEMO, I2RMBConvBlock
from .vemo import VEMO, inflate_2d_state

__all__ = ['EMO', 'EMOv2', 'UEMO', 'I2RMBConvBlock', 'VEMO', 'inflate_2d_state']
