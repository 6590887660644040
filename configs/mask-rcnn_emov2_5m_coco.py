# Mask R-CNN-EMOv2-5M, FPN, 1x on COCO 2017.
_base_ = ['./_base_/mask-rcnn_emov2_coco.py']
model = dict(
    backbone=dict(arch='5M', drop_path_rate=0.05,
                  init_cfg=dict(checkpoint='pretrained/EMOv2_5M_224.pth')),
    neck=dict(in_channels=[48, 72, 160, 288]),
)
