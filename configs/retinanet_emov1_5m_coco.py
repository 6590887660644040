# RetinaNet-EMOv1-5M, FPN, 1x on COCO 2017.
_base_ = ['./_base_/retinanet_emov1_coco.py']
model = dict(
    backbone=dict(arch='5M', window_size=10, drop_path_rate=0.05,
                  init_cfg=dict(checkpoint='pretrained/EMO_5M.pth')),
    neck=dict(in_channels=[48, 72, 160, 288]),
)
