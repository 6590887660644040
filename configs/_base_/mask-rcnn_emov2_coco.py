# Mask R-CNN-EMOv2, FPN, 1x on COCO 2017 (spec 6.3). Variants set arch, drop_path_rate,
# the pretrained file and the FPN input widths.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    './emov2_coco_1x.py',
    'mmdet::_base_/default_runtime.py',
]
model = dict(
    backbone=dict(
        _delete_=True,
        type='emo_mm.EMOv2',
        arch='5M',
        window_size=10,
        out_indices=(1, 2, 3, 4),
        frozen_stages=1,
        norm_eval=True,
        drop_path_rate=0.05,
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/EMOv2_5M_224.pth')),
    neck=dict(in_channels=[48, 72, 160, 288]),
)
train_dataloader = dict(batch_size=4, num_workers=4)
val_dataloader = dict(batch_size=1, num_workers=2)
test_dataloader = val_dataloader
