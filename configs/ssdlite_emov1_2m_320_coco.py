# SSDLite-EMOv1-2M at 320x320 on COCO 2017.
_base_ = ['./_base_/ssdlite_emov1_coco.py']
model = dict(
    backbone=dict(arch='2M', window_size=7, drop_path_rate=0.05,
                  init_cfg=dict(checkpoint='pretrained/EMO_2M.pth')),
    neck=dict(in_channels=(120, 200), out_channels=(120, 200, 512, 256, 256, 128)),
    bbox_head=dict(in_channels=(120, 200, 512, 256, 256, 128)),
)
