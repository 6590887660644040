# Semantic FPN with EMOv2 on ADE20K (the authors' logged runs): mmseg's FPN neck and head on
# the shared EMOv2 ADE20K setting, 160k iterations. Variants set arch, drop_path_rate, the
# pretrained file and the FPN input widths.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    './emov2_ade20k.py',
    './emov2_seg_160k.py',
]
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=_base_.crop_size),
    backbone=dict(_delete_=True, **_base_.emov2_backbone),
    neck=dict(in_channels=[48, 72, 160, 288]),
    decode_head=dict(num_classes=150),
)
