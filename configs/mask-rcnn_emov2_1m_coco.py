# Mask R-CNN-EMOv2-1M, FPN, 1x on COCO 2017.
_base_ = ['./_base_/mask-rcnn_emov2_coco.py']
model = dict(
    backbone=dict(arch='1M', drop_path_rate=0.04036,
                  init_cfg=dict(checkpoint='pretrained/EMOv2_1M_224.pth')),
    neck=dict(in_channels=[32, 48, 80, 180]),
)
