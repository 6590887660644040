# Semantic FPN with EMOv2-2M on ADE20K, 512x512, 160k iterations.
_base_ = ['./_base_/fpn_emov2_ade20k.py']
model = dict(
    backbone=dict(arch='2M', drop_path_rate=0.05,
                  init_cfg=dict(checkpoint='pretrained/EMOv2_2M_224.pth')),
    neck=dict(in_channels=[32, 48, 120, 200]),
)
