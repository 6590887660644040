# DeepLabv3-EMOv1-1M (configs/deeplabv3_emov1_1m_ade20k.py) on the generated ADE20K-format
# set: the EMOv2 demo's data, schedule and batch settings with the EMOv1 backbone.
_base_ = ['./deeplabv3_emov2_1m_demo.py']
model = dict(
    backbone=dict(_delete_=True, type='emo_mm.EMO', arch='1M', window_size=7,
                  out_indices=(1, 2, 3, 4), drop_path_rate=0.04036),
    decode_head=dict(in_channels=168),
    auxiliary_head=dict(in_channels=80))
