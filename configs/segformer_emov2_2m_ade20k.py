# SegFormer head with EMOv2-2M on ADE20K, 512x512, 160k iterations.
_base_ = ['./_base_/segformer_emov2_ade20k.py']
model = dict(
    backbone=dict(arch='2M', drop_path_rate=0.05,
                  init_cfg=dict(checkpoint='pretrained/EMOv2_2M_224.pth')),
    decode_head=dict(in_channels=[32, 48, 120, 200], channels=288),
)
