# SSDLite-EMOv1-5M at 320x320 on COCO 2017.
_base_ = ['./_base_/ssdlite_emov1_coco.py']
model = dict(
    backbone=dict(arch='5M', window_size=10, drop_path_rate=0.05,
                  init_cfg=dict(checkpoint='pretrained/EMO_5M.pth')),
    neck=dict(in_channels=(160, 288), out_channels=(160, 288, 512, 256, 256, 128)),
    bbox_head=dict(in_channels=(160, 288, 512, 256, 256, 128)),
)
