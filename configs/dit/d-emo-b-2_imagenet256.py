# D-EMO-B-2 (EMOv2's i2RMB in DiT) on ImageNet 256x256 latents, DiT's recipe as in the
# authors' logs (see _base_/dit_imagenet256.py).
_base_ = ['./_base_/dit_imagenet256.py']

model = dict(denoiser=dict(type='emo_mm.DEMO', arch='B-2'))
# 256 px (32x32 latents), the resolution of the paper's table.
# D-EMO blocks hold BatchNorm: average its running statistics with the weights, so the EMA
# model's statistics belong to EMA-like weights rather than to the live model's.
custom_hooks = [dict(type='EMAHook', momentum=1e-4, update_buffers=True,
                     priority='ABOVE_NORMAL')]
