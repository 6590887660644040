# Fine-tune the EMOv2-5M classifier on your own image folders (mmpretrain CustomDataset):
#   data/my_images/train/<class name>/*.jpg   and   data/my_images/val/<class name>/*.jpg
#   python tools/train.py configs/finetune/emov2_5m_custom-cls.py
# Classes are the folder names (sorted); set num_classes to their number.
_base_ = ['../emov2_5m_in1k.py']
num_classes = 10
data_root = 'data/my_images'

model = dict(
    # The authors' ImageNet weights: the backbone loads them, the head starts afresh
    # (its 1000-class tensors are reported and skipped).
    backbone=dict(init_cfg=dict(type='Pretrained', checkpoint='pretrained/EMOv2_5M_224.pth')),
    head=dict(num_classes=num_classes, topk=(1, )))
# The ImageNet recipe drops the last incomplete batch; a set smaller than one batch would
# then give no iteration at all. Every image is used here (the linear head and the
# backbone's norms take a last batch of any size).
train_dataloader = dict(
    batch_size=32, num_workers=2, drop_last=False,
    dataset=dict(_delete_=True, type='CustomDataset', data_root=data_root, data_prefix='train',
                 pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(
    batch_size=32, num_workers=2,
    dataset=dict(_delete_=True, type='CustomDataset', data_root=data_root, data_prefix='val',
                 pipeline={{_base_.test_pipeline}}))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

# A short schedule at a tenth of the ImageNet learning rate, for one process with 32
# images (--auto-scale-lr scales it to the batch of the run from that base).
optim_wrapper = dict(optimizer=dict(lr=3e-4))
auto_scale_lr = dict(base_batch_size=32)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=1, end=30,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=30)
# No EMA: the recipe's average (momentum 2e-4) spans thousands of iterations, so after a
# short fine-tuning run it would still hold (and evaluate and save) the starting weights.
custom_hooks = []
