# SSDLite-EMOv2-1M (320x320) on the generated COCO-format shapes set (learning tests).
# Only data, schedule and batch settings differ from configs/ssdlite_emov2_1m_320_coco.py
# (no Expand / MinIoURandomCrop zoom-out: the demo objects already span the anchor sizes),
# and the backbone starts from the shapes-pretrained stand-in for the ImageNet checkpoint
# (emo_mm/demo/pretrain.py; `python tools/misc/make_demo_data.py coco shapes_backbone`), with its
# BatchNorm statistics updated. Paths and class names come from ./_base_/demo_data.py.
_base_ = ['../ssdlite_emov2_1m_320_coco.py', './_base_/demo_data.py']

data_root = _base_.demo_coco_root + '/'  # mmdet appends file names to it as strings
metainfo = dict(classes=_base_.demo_coco_classes)
model = dict(
    backbone=dict(init_cfg=dict(checkpoint=_base_.demo_shapes_backbone), norm_eval=False),
    bbox_head=dict(num_classes=4))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(320, 320), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(times=1, dataset=dict(
        data_root=data_root, metainfo=metainfo, ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'), filter_cfg=dict(filter_empty_gt=True, min_size=8),
        pipeline=train_pipeline)))
val_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_val.json', data_prefix=dict(img='val/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

# Minutes on a CPU after a short pretraining: no gradient clipping (tuned for fine-tuning ImageNet
# weights, it stalls AdamW here), short warm-up, cosine to 0.
max_epochs = 12
optim_wrapper = dict(clip_grad=None)
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=40),
    dict(type='CosineAnnealingLR', eta_min=0., begin=0, end=max_epochs, T_max=max_epochs,
         by_epoch=True),
]
default_hooks = dict(logger=dict(interval=4), checkpoint=dict(interval=max_epochs))
