# Semantic FPN with EMOv2-5M on ADE20K, 512x512, 160k iterations.
_base_ = ['./_base_/fpn_emov2_ade20k.py']
model = dict(
    backbone=dict(arch='5M', drop_path_rate=0.05,
                  init_cfg=dict(checkpoint='pretrained/EMOv2_5M_224.pth')),
    neck=dict(in_channels=[48, 72, 160, 288]),
)
