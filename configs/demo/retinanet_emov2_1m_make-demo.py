# `make demo`: RetinaNet-EMOv2-1M on its own generated set (four classes, each a shape of its
# own colour, a quarter to a half of a 128-pixel image; emo_mm/demo/data.py
# make_demo_det_shapes), trained and evaluated in a few CPU minutes (tools/demo.py).
# The detector is mmdet's RetinaNet on the EMOv2-1M backbone, sized for that set and that
# budget: the backbone's stride-8 and stride-16 outputs (the strides whose anchors cover the
# boxes), and a narrow FPN and head (64 channels, 2 convs instead of 256 and 4), which are
# enough for four easy classes and otherwise take most of each step's time. One anchor
# shape (square) in two sizes per level. The backbone starts from the stand-in for ImageNet
# weights pretrained on the same kind of images (emo_mm/demo/pretrain.py
# pretrain_demo_det_backbone). Data, schedule and batch settings beyond these are those of
# retinanet_emov2_1m_demo.py (the learning tests' recipe).
_base_ = ['./retinanet_emov2_1m_demo.py']  # its pipelines: 128-pixel images, flips

data_root = _base_.demo_det_root + '/'  # mmdet appends file names to it as strings
metainfo = dict(classes=_base_.demo_det_classes)
channels = 64
model = dict(
    backbone=dict(out_indices=(2, 3), drop_path_rate=0.,
                  init_cfg=dict(checkpoint=_base_.demo_det_backbone)),
    neck=dict(in_channels=[48, 80], out_channels=channels, start_level=0,
              add_extra_convs=False, num_outs=2),
    bbox_head=dict(in_channels=channels, feat_channels=channels, stacked_convs=2,
                   anchor_generator=dict(octave_base_scale=4, scales_per_octave=2,
                                         ratios=[1.0], strides=[8, 16])))

train_dataloader = dict(batch_size=8, dataset=dict(data_root=data_root, metainfo=metainfo))
val_dataloader = dict(batch_size=10, dataset=dict(data_root=data_root, metainfo=metainfo))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

# A short warm-up, cosine to 0.
max_epochs = 4
optim_wrapper = dict(optimizer=dict(lr=2e-3))
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(type='CosineAnnealingLR', eta_min=0., begin=0, end=max_epochs, T_max=max_epochs,
         by_epoch=True),
]
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=max_epochs))
