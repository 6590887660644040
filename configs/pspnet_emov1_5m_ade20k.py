# PSPNet with EMOv1-5M on ADE20K, 512x512, 80k iterations.
_base_ = ['./_base_/pspnet_emov1_ade20k.py']
model = dict(
    backbone=dict(arch='5M', window_size=16, drop_path_rate=0.05,
                  init_cfg=dict(checkpoint='pretrained/EMO_5M.pth')),
    decode_head=dict(in_channels=288),
    auxiliary_head=dict(in_channels=160),
)
