# SSDLite-EMOv1-1M at 320x320 on COCO 2017.
_base_ = ['./_base_/ssdlite_emov1_coco.py']
model = dict(
    backbone=dict(arch='1M', window_size=7, drop_path_rate=0.04036,
                  init_cfg=dict(checkpoint='pretrained/EMO_1M.pth')),
    neck=dict(in_channels=(80, 168), out_channels=(80, 168, 512, 256, 256, 128)),
    bbox_head=dict(in_channels=(80, 168, 512, 256, 256, 128)),
)
