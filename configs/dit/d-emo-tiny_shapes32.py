# A tiny D-EMO trained in pixel space on the generated 32x32 shapes (9 classes: 3 shapes x
# 3 colours) for a few CPU minutes: the generation demo and learning test. DiT's diffusion
# (1000 linear-beta steps, learned-variance VLB, label dropout 0.1, EMA), with what minutes
# on a CPU need: a 4-block D-EMO of width 96 on 4x4 patches (8x8 tokens), velocity
# prediction instead of DiT's noise prediction (it weights more the high-noise steps that
# lay out an image), a higher learning rate with warm-up, a short EMA, and 25 DDIM steps
# (eta 0) with classifier-free guidance scale 3 for evaluation; 2000 iterations.
#   python -m emo_mm.generation.class_shapes          # data/demo_gen_shapes (seconds)
#   python tools/train.py configs/dit/d-emo-tiny_shapes32.py
#   python tools/misc/sample.py configs/dit/d-emo-tiny_shapes32.py \
#       work_dirs/d-emo-tiny_shapes32/iter_2000.pth --classes 0 1 2 --n-per-class 4 \
#       --out grid.png --trust-checkpoint
_base_ = ['./_base_/default_runtime.py']
data_root = 'data/demo_gen_shapes'
num_classes = 9

model = dict(
    type='emo_mm.DiffusionModel',
    denoiser=dict(
        type='emo_mm.DEMO',
        arch=dict(hidden=96, depth=4, heads=3, patch_size=4, window_size=4),
        input_size=32,
        in_channels=3,
        num_classes=num_classes,
        learn_sigma=True,
        class_dropout_prob=0.1),
    num_timesteps=1000,
    beta_schedule='linear',
    learn_sigma=True,
    prediction='v',  # velocity (DiT: 'eps')
    # pixels in [-1, 1]: predicted images are clipped to that range at every step
    sample_cfg=dict(sampler='ddim', steps=25, eta=0.0, cfg_scale=3.0, clip_denoised=True,
                    seed=0),
    data_preprocessor=dict(type='emo_mm.DiffusionDataPreprocessor', mean=127.5, std=127.5,
                           hflip_prob=0.5, quantize=True),
)

train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    persistent_workers=False,
    drop_last=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='emo_mm.ClassImageDataset', data_root=data_root,
                 data_prefix=dict(img_path='train')),
)
# evaluation: one generated image per real validation image (20 per class), judged by a
# classifier trained on the real training images (emo_mm/generation/metrics.py)
val_dataloader = dict(
    batch_size=60,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='emo_mm.ClassImageDataset', data_root=data_root,
                 data_prefix=dict(img_path='val')),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='emo_mm.ClassifierFeatureMetric', data_root=data_root)
test_evaluator = val_evaluator

max_iters = 2000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, betas=(0.9, 0.99), weight_decay=0.))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', eta_min=1e-4, by_epoch=False, begin=0, end=max_iters,
         T_max=max_iters),
]
# EMA = (1 - momentum) * EMA + momentum * weights (MMEngine's convention; DiT's decay
# 0.9999 is momentum 1e-4). A short run needs a short average: momentum 0.02 (~50 steps).
# update_buffers: the EMA model's BatchNorm statistics are averaged too.
custom_hooks = [dict(type='EMAHook', momentum=0.02, update_buffers=True,
                     priority='ABOVE_NORMAL')]

default_hooks = dict(logger=dict(interval=50), checkpoint=dict(interval=max_iters))
env_cfg = dict(dist_cfg=dict(backend='gloo'))  # CPU runs
