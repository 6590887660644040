from .emov2 import EMOv2
from .uemo import UEMO, I2RMBConvBlock

__all__ = ['EMOv2', 'UEMO', 'I2RMBConvBlock']
