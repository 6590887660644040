# SSDLite-EMOv2-2M at 512x512 on COCO 2017.
_base_ = ['./_base_/ssdlite_emov2_coco_512.py']
model = dict(
    backbone=dict(arch='2M', drop_path_rate=0.05,
                  init_cfg=dict(checkpoint='pretrained/EMOv2_2M_224.pth')),
    neck=dict(in_channels=(120, 200), out_channels=(120, 200, 512, 256, 256, 128)),
    bbox_head=dict(in_channels=(120, 200, 512, 256, 256, 128)),
)
