# EMOv2-1M classifier (configs/emov2_1m_in1k.py) on the generated shapes classification set
# (one shape per image, 4 classes; learning and deploy tests). Only data, schedule and
# batch settings differ, the backbone starts from the demo detectors' stand-in for ImageNet
# weights (EMOv2-1M pretrained on labelling generated shape pixels, emo_mm/demo/pretrain.py;
# its final norm and the head start afresh), and there is no EMA: over a short run its
# weights stay near the initialisation.
# The test pipeline resizes (short edge 72) and centre-crops (64) like the ImageNet one
# (256 / 224), with OpenCV's bilinear resize.
_base_ = ['../emov2_1m_in1k.py', './_base_/demo_data.py']

data_root = _base_.demo_cls_root
metainfo = dict(classes=_base_.demo_coco_classes)
model = dict(
    backbone=dict(init_cfg=dict(type='Pretrained', checkpoint=_base_.demo_shapes_backbone)),
    head=dict(num_classes=4))
data_preprocessor = dict(num_classes=4)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=64, crop_ratio_range=(0.6, 1.0), backend='cv2'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=72, edge='short', backend='cv2', interpolation='bilinear'),
    dict(type='CenterCrop', crop_size=64),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=32, num_workers=0, persistent_workers=False, drop_last=True,
    dataset=dict(_delete_=True, type='CustomDataset', data_root=data_root,
                 ann_file='meta/train.txt', data_prefix='train', metainfo=metainfo,
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=32, num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, type='CustomDataset', data_root=data_root,
                 ann_file='meta/val.txt', data_prefix='val', metainfo=metainfo,
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

# Shorter runs learn the four shapes slowly and depend on the seed.
max_epochs = 40
optim_wrapper = dict(optimizer=dict(lr=2e-3), clip_grad=None)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', eta_min=0., begin=0, end=max_epochs, T_max=max_epochs,
         by_epoch=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=max_epochs)
custom_hooks = []
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=max_epochs))
