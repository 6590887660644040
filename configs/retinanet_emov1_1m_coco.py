# RetinaNet-EMOv1-1M, FPN, 1x on COCO 2017.
_base_ = ['./_base_/retinanet_emov1_coco.py']
model = dict(
    backbone=dict(arch='1M', window_size=7, drop_path_rate=0.04036,
                  init_cfg=dict(checkpoint='pretrained/EMO_1M.pth')),
    neck=dict(in_channels=[32, 48, 80, 168]),
)
