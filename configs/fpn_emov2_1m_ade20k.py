# Semantic FPN with EMOv2-1M on ADE20K, 512x512, 160k iterations.
_base_ = ['./_base_/fpn_emov2_ade20k.py']
model = dict(
    backbone=dict(arch='1M', drop_path_rate=0.04036,
                  init_cfg=dict(checkpoint='pretrained/EMOv2_1M_224.pth')),
    neck=dict(in_channels=[32, 48, 80, 180]),
)
