# RetinaNet-EMOv1-1M (configs/retinanet_emov1_1m_coco.py) on the generated COCO-format
# shapes set: the EMOv2 demo's data, schedule and batch settings with the EMOv1 backbone,
# trained from scratch (the shapes-pretrained stand-in for ImageNet weights is EMOv2's).
_base_ = ['./retinanet_emov2_1m_demo.py']
model = dict(
    backbone=dict(_delete_=True, type='emo_mm.EMO', arch='1M', window_size=7,
                  out_indices=(1, 2, 3, 4), frozen_stages=-1, norm_eval=False,
                  drop_path_rate=0.04036),
    neck=dict(in_channels=[32, 48, 80, 168]))
