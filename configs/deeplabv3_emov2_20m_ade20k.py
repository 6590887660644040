# DeepLabv3 with EMOv2-20M on ADE20K, 512x512, 80k iterations.
_base_ = ['./_base_/deeplabv3_emov2_ade20k.py']
model = dict(
    backbone=dict(arch='20M', drop_path_rate=0.1,
                  init_cfg=dict(checkpoint='pretrained/EMOv2_20M_224.pth')),
    decode_head=dict(in_channels=448),
    auxiliary_head=dict(in_channels=320),
)
