# Mask R-CNN-EMOv2-2M, FPN, 1x on COCO 2017.
_base_ = ['./_base_/mask-rcnn_emov2_coco.py']
model = dict(
    backbone=dict(arch='2M', drop_path_rate=0.05,
                  init_cfg=dict(checkpoint='pretrained/EMOv2_2M_224.pth')),
    neck=dict(in_channels=[32, 48, 120, 200]),
)
