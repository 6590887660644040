# SSDLite-EMOv2-20M at 512x512 on COCO 2017.
_base_ = ['./_base_/ssdlite_emov2_coco_512.py']
model = dict(
    backbone=dict(arch='20M', drop_path_rate=0.1,
                  init_cfg=dict(checkpoint='pretrained/EMOv2_20M_224.pth')),
    neck=dict(in_channels=(320, 448), out_channels=(320, 448, 512, 256, 256, 128)),
    bbox_head=dict(in_channels=(320, 448, 512, 256, 256, 128)),
)
