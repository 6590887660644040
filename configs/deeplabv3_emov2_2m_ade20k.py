# DeepLabv3 with EMOv2-2M on ADE20K, 512x512, 80k iterations.
_base_ = ['./_base_/deeplabv3_emov2_ade20k.py']
model = dict(
    backbone=dict(arch='2M', drop_path_rate=0.05,
                  init_cfg=dict(checkpoint='pretrained/EMOv2_2M_224.pth')),
    decode_head=dict(in_channels=200),
    auxiliary_head=dict(in_channels=120),
)
