# SegFormer head with EMOv2 on ADE20K (the authors' logged runs): mmseg's SegformerHead on
# all four stages of the shared EMOv2 ADE20K setting, 160k iterations. Variants set arch,
# drop_path_rate, the pretrained file and the head widths.
_base_ = [
    'mmseg::_base_/models/segformer_mit-b0.py',
    './emov2_ade20k.py',
    './emov2_seg_160k.py',
]
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=_base_.crop_size),
    backbone=dict(_delete_=True, **_base_.emov2_backbone),
    decode_head=dict(in_channels=[48, 72, 160, 288], channels=288, num_classes=150),
)
