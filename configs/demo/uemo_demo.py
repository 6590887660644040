# U-EMO on the generated HRF-format vessel set (learning tests). Only data, schedule and
# batch settings differ from configs/uemo_hrf.py: CPU-sized crops (48 for training, a
# 64 / 42 sliding window at test time, the real 256 / 170 scaled down) on 100x140
# images, sizes that are not multiples of the window or its stride. One loss setting
# differs too: vessels are a small share of the pixels, and weighting their class 5x in the
# cross-entropy keeps short runs from scratch from settling on "all background".
_base_ = ['../uemo_hrf.py', './_base_/demo_data.py']

data_root = _base_.demo_hrf_root
crop_size = (48, 48)
vessel_weighted_ce = dict(type='CrossEntropyLoss', use_sigmoid=False, class_weight=[1.0, 5.0])
model = dict(
    data_preprocessor=dict(size=crop_size),
    decode_head=dict(loss_decode=dict(vessel_weighted_ce, loss_weight=1.0)),
    auxiliary_head=dict(loss_decode=dict(vessel_weighted_ce, loss_weight=0.4)),
    test_cfg=dict(mode='slide', crop_size=(64, 64), stride=(42, 42)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(times=1000, dataset=dict(data_root=data_root, pipeline=train_pipeline)))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

max_iters = 150
optim_wrapper = dict(optimizer=dict(lr=2e-3), clip_grad=None)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=10),
    dict(type='CosineAnnealingLR', eta_min=0., begin=0, end=max_iters, T_max=max_iters,
         by_epoch=False),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=max_iters))
