# RetinaNet-EMOv1-2M, FPN, 1x on COCO 2017.
_base_ = ['./_base_/retinanet_emov1_coco.py']
model = dict(
    backbone=dict(arch='2M', window_size=7, drop_path_rate=0.05,
                  init_cfg=dict(checkpoint='pretrained/EMO_2M.pth')),
    neck=dict(in_channels=[32, 48, 120, 200]),
)
