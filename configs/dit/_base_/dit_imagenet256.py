# DiT's ImageNet 256x256 recipe (Peebles & Xie; the D-EMO logs come from the same train.py),
# on pre-extracted Stable Diffusion VAE latents (32x32x4):
#   python tools/dataset_converters/extract_latents.py IMAGENET/train data/imagenet_latents \
#       --vae PATH_TO_SD_VAE
#   tools/dist_train.sh configs/dit/d-emo-s-2_imagenet256.py 8
# The size configs set model.denoiser (type and arch) only.
_base_ = ['./default_runtime.py']

# Stable Diffusion's VAE latent scale: latents are stored as the encoder gives them and
# multiplied by it here (std = 1 / scale).
latent_scale = 0.18215

model = dict(
    type='emo_mm.DiffusionModel',
    denoiser=dict(
        type='emo_mm.DiT',
        arch='S-2',
        input_size=32,  # 256 px / the VAE's factor 8
        in_channels=4,
        num_classes=1000,
        learn_sigma=True,
        class_dropout_prob=0.1),  # label dropout for classifier-free guidance
    num_timesteps=1000,
    beta_schedule='linear',
    learn_sigma=True,
    # DiT's evaluation: 250 respaced DDPM steps; the FIDs of both papers' tables are
    # without guidance (cfg_scale 1).
    sample_cfg=dict(sampler='ddpm', steps=250, cfg_scale=1.0),
    data_preprocessor=dict(
        type='emo_mm.DiffusionDataPreprocessor',
        mean=0.,
        std=1 / latent_scale,
        # DiT flips images before encoding; on stored latents the flip is applied to the
        # latent (the VAE is close to, not exactly, flip-equivariant). For the exact
        # augmentation extract with --flip-copies and set hflip_prob=0.
        hflip_prob=0.5),
)

train_dataloader = dict(
    batch_size=32,  # per GPU: 8 GPUs x 32 = DiT's global batch of 256
    num_workers=4,
    persistent_workers=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='emo_mm.LatentDataset', data_root='data/imagenet_latents',
                 num_classes=1000),
)
# FID-50K needs ADM's evaluation suite and reference batches, which are not part of
# emo_mm: no validation loop; sample with tools/misc/sample.py.
val_dataloader = None
val_cfg = None
val_evaluator = None
test_dataloader = None
test_cfg = None
test_evaluator = None

train_cfg = dict(type='IterBasedTrainLoop', max_iters=400_000)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.))
param_scheduler = []  # constant learning rate
# The recipe's batch (not scaled unless --auto-scale-lr is given).
auto_scale_lr = dict(base_batch_size=256, enable=False)

# EMA with decay 0.9999: MMEngine's ExponentialMovingAverage updates
# ema = (1 - momentum) * ema + momentum * param, so momentum = 1 - 0.9999. Its first update
# copies the weights, as DiT's update_ema(ema, model, decay=0) does before training.
custom_hooks = [dict(type='EMAHook', momentum=1e-4, update_buffers=False,
                     priority='ABOVE_NORMAL')]
