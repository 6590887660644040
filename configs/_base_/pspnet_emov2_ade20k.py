# PSPNet with EMOv2 on ADE20K (the authors' logged runs): mmseg's PSPNet (FCN auxiliary head
# on stage 3) on the shared EMOv2 ADE20K setting, 80k iterations. Variants set arch,
# drop_path_rate, the pretrained file and the head widths.
_base_ = [
    'mmseg::_base_/models/pspnet_r50-d8.py',
    './emov2_ade20k.py',
    './emov2_seg_80k.py',
]
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=_base_.crop_size),
    backbone=dict(_delete_=True, **_base_.emov2_backbone),
    decode_head=dict(in_channels=288, channels=256, num_classes=150),
    auxiliary_head=dict(in_channels=160, channels=256, num_classes=150),
)
