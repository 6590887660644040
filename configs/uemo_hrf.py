# U-EMO on HRF: UNet-S5-D16 built of i2RMBs, DeepLabv3 (ASPP) head + FCN auxiliary head,
# 256x256 crops, slide inference (crop 256, stride 170), 40k iterations, mDice.
# The authors' file: unet-emo2_5M-s5-d16_deeplabv3_hrf-256x256.py (no ImageNet weights).
_base_ = [
    'mmseg::_base_/models/deeplabv3_unet_s5-d16.py',
    'mmseg::_base_/datasets/hrf.py',
    './_base_/emov2_seg_80k.py',
    'mmseg::_base_/default_runtime.py',
]
crop_size = (256, 256)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(type='emo_mm.UEMO', block_cfg=dict(window_size=10, dim_head=32, exp_ratio=2)),
    test_cfg=dict(mode='slide', crop_size=(256, 256), stride=(170, 170)))

# The 80k schedule's shape over 40k iterations (cosine over 20k-40k), val every 4k;
# 4 GPUs x 8 images.
max_iters = 40000
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-5, by_epoch=False, begin=0, end=500),
    dict(type='CosineAnnealingLR', eta_min=0., begin=max_iters // 2, end=max_iters,
         T_max=max_iters // 2, by_epoch=False),
]
train_cfg = dict(max_iters=max_iters, val_interval=4000)
default_hooks = dict(checkpoint=dict(interval=4000))
train_dataloader = dict(batch_size=8, num_workers=4)
val_dataloader = dict(batch_size=1, num_workers=4)
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mDice'])
test_evaluator = val_evaluator
