# EMOv1 (EMO-5M) on ImageNet-1k at 224 (authors' recipe, see _base_/emov1_in1k.py).
_base_ = ['./_base_/emov1_in1k.py']

model = dict(
    backbone=dict(arch='5M', drop_path_rate=0.05),
    head=dict(in_channels=288),
)
