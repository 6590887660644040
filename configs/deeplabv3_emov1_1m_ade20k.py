# DeepLabv3 with EMOv1-1M on ADE20K, 512x512, 80k iterations.
_base_ = ['./_base_/deeplabv3_emov1_ade20k.py']
model = dict(
    backbone=dict(arch='1M', window_size=7, drop_path_rate=0.04036,
                  init_cfg=dict(checkpoint='pretrained/EMO_1M.pth')),
    decode_head=dict(in_channels=168),
    auxiliary_head=dict(in_channels=80),
)
