from .emov2 import EMOv2

__all__ = ['EMOv2']
