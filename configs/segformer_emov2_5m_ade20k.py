# SegFormer head with EMOv2-5M on ADE20K, 512x512, 160k iterations.
_base_ = ['./_base_/segformer_emov2_ade20k.py']
model = dict(
    backbone=dict(arch='5M', drop_path_rate=0.05,
                  init_cfg=dict(checkpoint='pretrained/EMOv2_5M_224.pth')),
    decode_head=dict(in_channels=[48, 72, 160, 288], channels=288),
)
