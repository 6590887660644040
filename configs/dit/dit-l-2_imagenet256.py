# DiT-L/2 on ImageNet 256x256 latents, DiT's recipe (see _base_/dit_imagenet256.py).
_base_ = ['./_base_/dit_imagenet256.py']

model = dict(denoiser=dict(type='emo_mm.DiT', arch='L-2'))
