# The DiT counterpart of d-emo-tiny_shapes32.py: the same diffusion, data, schedule and
# evaluation with DiT's adaLN-Zero Transformer block in place of D-EMO's, at about the
# same parameter count: width 84 instead of 96 gives 574,572 parameters against D-EMO's
# 598,848 (DiT's block has 18h^2 + 15h parameters, D-EMO's 13h^2 + 119h).
_base_ = ['./d-emo-tiny_shapes32.py']

model = dict(denoiser=dict(type='emo_mm.DiT',
                           arch=dict(_delete_=True, hidden=84, depth=4, heads=2, patch_size=4)))
