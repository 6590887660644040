# Mask R-CNN-EMOv2, FPN, 1x on COCO 2017 (the authors' logged runs): mmdet's Mask R-CNN on
# the shared EMOv2 FPN setting (emov2_fpn_coco.py); 4 GPUs x 4 images. Variants set arch,
# drop_path_rate, the pretrained file and the FPN input widths.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    './emov2_fpn_coco.py',
]
model = dict(
    backbone=dict(_delete_=True, **_base_.emov2_backbone),
    neck=dict(in_channels=[48, 72, 160, 288]),
)
train_dataloader = dict(batch_size=4, num_workers=4)
val_dataloader = dict(batch_size=1, num_workers=2)
test_dataloader = val_dataloader
