# RetinaNet-EMOv2-20M, FPN, 1x on COCO 2017.
_base_ = ['./_base_/retinanet_emov2_coco.py']
model = dict(
    backbone=dict(arch='20M', drop_path_rate=0.1,
                  init_cfg=dict(checkpoint='pretrained/EMOv2_20M_224.pth')),
    neck=dict(in_channels=[64, 128, 320, 448]),
)
