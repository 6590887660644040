# EMOv2-20M on ImageNet-1k at 224 (authors' recipe, see _base_/emov2_in1k.py).
_base_ = ['./_base_/emov2_in1k.py']

model = dict(
    backbone=dict(arch='20M', drop_path_rate=0.1),
    head=dict(in_channels=448),
)
