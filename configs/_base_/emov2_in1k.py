# ImageNet-1k recipe of the EMOv2 authors (their emo2_224.py and training logs) on
# mmpretrain's bases.
# Per-variant files set `model.backbone.arch`, the head's in_channels and drop_path_rate.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/default_runtime.py',
]
# emo_mm.compat.enable applies emo_mm's upstream fixes (the toolboxes' own tools need them).
custom_imports = dict(imports=['emo_mm.compat.enable', 'emo_mm.models'],
                      allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='emo_mm.EMOv2',
        arch='5M',
        window_size=7,  # 7 at 224 (8 at 256 / 512); downstream configs use 10
        out_indices=(4, ),
        final_norm=True,  # the classifier's LayerNorm, authors' key `norm.norm.*`
        drop_path_rate=0.05),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=288,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.)),
)

# timm's RandomResizedCrop picks bilinear or bicubic at random; mmpretrain's takes one.
# RandAugment rand-m9-mstd0.5-inc1 is the base's timm_increasing policy. No erasing,
# no mixup / cutmix (the authors set their probabilities to 0).
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='RandAugment',
        policies='timm_increasing',
        num_policies=2,
        total_level=10,
        magnitude_level=9,
        magnitude_std=0.5,
        hparams=dict(pad_val=[104, 116, 124], interpolation='bicubic')),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=128, num_workers=8, drop_last=True,
                        dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=128, num_workers=8)
test_dataloader = val_dataloader

# AdamW 3e-3 at batch 1024 (8 GPUs x 128), wd 0.05; no decay on 1-D tensors, biases and
# LayerScale gammas. Norm-based gradient clipping at 5. The authors trained with AMP:
# `tools/train.py CONFIG --amp` on GPUs.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=3e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0., bias_decay_mult=0., flat_decay_mult=0.,
        custom_keys={'.gamma': dict(decay_mult=0.)}),
    clip_grad=dict(max_norm=5.0),
)
# Per-iteration cosine after 20 warm-up epochs, from and down to 5e-7.
param_scheduler = [
    dict(type='LinearLR', start_factor=5e-7 / 3e-3, by_epoch=True, begin=0, end=20,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=5e-7, by_epoch=True, begin=20, end=300,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=1024)

# EMA of the whole state dict with decay 0.9998, evaluated in place of the raw weights.
# CheckpointLayoutHook: any Runner of these configs (`mim test`, mmpretrain's own tools) loads
# the authors' released files, which the model zoo links and `mim download` fetches, by
# converting their key layout on the fly.
custom_hooks = [dict(type='EMAHook', momentum=2e-4, update_buffers=True,
                     priority='ABOVE_NORMAL'),
                dict(type='emo_mm.CheckpointLayoutHook')]
randomness = dict(seed=42)
