# SSDLite-EMOv2-1M at 320x320 on COCO 2017.
_base_ = ['./_base_/ssdlite_emov2_coco.py']
model = dict(
    backbone=dict(arch='1M', drop_path_rate=0.04036,
                  init_cfg=dict(checkpoint='pretrained/EMOv2_1M_224.pth')),
    neck=dict(in_channels=(80, 180), out_channels=(80, 180, 512, 256, 256, 128)),
    bbox_head=dict(in_channels=(80, 180, 512, 256, 256, 128)),
)
