"""The registered backbones. U-EMO (mmseg's UNet made of i2RMBs) is registered through a
builder that imports mmseg when a U-EMO is built, not when this package is imported."""
from ...registry import MODELS
from .base import EMOBackbone, I2RMBBackbone
from .emov1 import EMO
from .emov2 import EMOv2
from .vemo import VEMO, inflate_2d_state


@MODELS.register_module(name='UEMO')
def build_uemo(**kwargs):
    """Builds :class:`emo_mm.models.backbones.uemo.UEMO` (mmseg's UNet of i2RMBs)."""
    from .uemo import UEMO
    return UEMO(**kwargs)


__all__ = ['EMOBackbone', 'I2RMBBackbone', 'EMO', 'EMOv2', 'VEMO', 'inflate_2d_state',
           'build_uemo']
