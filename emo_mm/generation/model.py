"""Class-conditional diffusion models (DiT, D-EMO) as MMEngine models.

``DiffusionModel`` wraps a denoiser network ``net(x, t, y)`` (``emo_mm.DEMO``,
``emo_mm.DiT``) with a :class:`GaussianDiffusion`: ``mode='loss'`` returns DiT's training
loss for the Runner's train loop, ``mode='predict'`` draws class-conditional samples for
the val / test loops (with the EMA weights when the config has MMEngine's ``EMAHook``,
which swaps them in for validation and testing and saves them as the checkpoint's
``state_dict``).
"""
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmengine.model import BaseDataPreprocessor, BaseModel
from mmengine.structures import BaseDataElement
from torch import Tensor, nn

from ..registry import MODELS
from .diffusion import GaussianDiffusion

#: Sampling defaults: DiT's evaluation (250 respaced DDPM steps, data not clipped).
DEFAULT_SAMPLE_CFG = dict(sampler='ddpm', steps=250, eta=0.0, cfg_scale=1.0,
                          guided_channels=None, clip_denoised=False, seed=0)


def _channel_stats(values) -> Optional[Tensor]:
    if values is None:
        return None
    return torch.as_tensor(values, dtype=torch.float32).flatten().view(-1, 1, 1)


@MODELS.register_module()
class DiffusionDataPreprocessor(BaseDataPreprocessor):
    """Stacks the samples, maps them to the diffusion's data space and flips for training.

    ``x = (input - mean) / std`` per channel: images in 0..255 with mean = std = 127.5 go
    to [-1, 1]; VAE latents with mean 0 and std 1 / 0.18215 get DiT's latent scale.

    Args:
        mean, std: per-channel values (a number or one per channel); None: 0 and 1.
        hflip_prob: probability of a horizontal flip per training sample (DiT: 0.5, the
            only augmentation it uses).
        quantize: generated samples are returned as uint8 images (pixel-space models).
    """

    def __init__(self,
                 mean: Union[None, float, Sequence[float]] = None,
                 std: Union[None, float, Sequence[float]] = None,
                 hflip_prob: float = 0.0,
                 quantize: bool = False,
                 non_blocking: bool = False):
        super().__init__(non_blocking)
        if not 0.0 <= hflip_prob <= 1.0:
            raise ValueError(f'hflip_prob must be in [0, 1], got {hflip_prob}.')
        if std is not None and 0 in torch.as_tensor(std, device='cpu').flatten().tolist():
            raise ValueError(f'std must be non-zero, got {std}.')
        mean, std = _channel_stats(mean), _channel_stats(std)
        self.register_buffer('mean', mean if mean is not None else torch.zeros(1, 1, 1), False)
        self.register_buffer('std', std if std is not None else torch.ones(1, 1, 1), False)
        self.hflip_prob = hflip_prob
        self.quantize = quantize

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        inputs = data.get('inputs')
        if inputs is not None:
            if isinstance(inputs, (list, tuple)):
                inputs = torch.stack(list(inputs))
            inputs = self.normalize(inputs)
            if training and self.hflip_prob > 0:
                flip = torch.rand(inputs.shape[0], device=inputs.device) < self.hflip_prob
                inputs = torch.where(flip.view(-1, 1, 1, 1), inputs.flip(-1), inputs)
        return dict(inputs=inputs, data_samples=data.get('data_samples'))

    def normalize(self, inputs: Tensor) -> Tensor:
        """Data as loaded -> the diffusion's data space."""
        if self.mean.numel() not in (1, inputs.shape[1]):
            raise ValueError(f'{self.mean.numel()} mean values for {inputs.shape[1]}-channel '
                             'inputs.')
        return (inputs.float() - self.mean) / self.std

    def denormalize(self, x: Tensor) -> Tensor:
        """The diffusion's data space -> data as loaded (uint8 images with ``quantize``)."""
        x = x * self.std + self.mean
        return x.round().clamp(0, 255).to(torch.uint8) if self.quantize else x


def _labels(data_samples) -> Tensor:
    if data_samples is None:
        raise ValueError('DiffusionModel needs data_samples with gt_label (class labels).')
    labels = []
    for sample in data_samples:
        label = sample.get('gt_label') if isinstance(sample, (dict, BaseDataElement)) else sample
        if label is None:
            raise ValueError(f'A data sample has no gt_label: {sample!r}.')
        labels.append(int(label))
    return torch.tensor(labels, dtype=torch.long)


@MODELS.register_module()
class DiffusionModel(BaseModel):
    """A class-conditional Gaussian diffusion model around a denoiser network.

    Args:
        denoiser: config (or module) of the network net(x, t, y) -> (B, 2C or C, H, W)
            with attributes ``in_channels``, ``learn_sigma``, ``num_classes`` (also the
            null label of classifier-free guidance) and ``input_size``. It drops labels
            for guidance itself in training (DiT's label dropout).
        num_timesteps: diffusion steps (DiT: 1000).
        beta_schedule: ``'linear'`` (DiT) or ``'cosine'``.
        learn_sigma: the denoiser predicts variances; must agree with the denoiser.
        prediction: what the denoiser's first C output channels predict: ``'eps'``, the
            noise (DiT), or ``'v'``, the velocity (see :mod:`.diffusion`).
        sample_cfg: overrides of :data:`DEFAULT_SAMPLE_CFG`: ``sampler`` ('ddpm' or
            'ddim'), ``steps`` (respaced step count, or ``'ddimN'``), ``eta`` (DDIM),
            ``cfg_scale``, ``guided_channels`` (prediction channels guided; default all, DiT's
            script guides 3), ``clip_denoised``, ``seed`` (sample i of a data set uses the
            generator seeded with seed and its ``sample_idx``, so samples do not depend
            on the batch size).
        data_preprocessor: config of a :class:`DiffusionDataPreprocessor`.
    """

    def __init__(self,
                 denoiser: Union[dict, nn.Module],
                 num_timesteps: int = 1000,
                 beta_schedule: str = 'linear',
                 learn_sigma: bool = True,
                 prediction: str = 'eps',
                 sample_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        if data_preprocessor is None:
            data_preprocessor = dict(type='emo_mm.DiffusionDataPreprocessor')
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.denoiser = MODELS.build(denoiser) if isinstance(denoiser, dict) else denoiser
        for attr in ('in_channels', 'learn_sigma', 'num_classes'):
            if not hasattr(self.denoiser, attr):
                raise TypeError(f'The denoiser {type(self.denoiser).__name__} lacks the '
                                f'attribute {attr!r} of the denoiser interface.')
        if bool(self.denoiser.learn_sigma) != bool(learn_sigma):
            raise ValueError(f'learn_sigma={learn_sigma} but the denoiser has learn_sigma='
                             f'{self.denoiser.learn_sigma}; set both alike.')
        self.diffusion = GaussianDiffusion(num_timesteps=num_timesteps,
                                           beta_schedule=beta_schedule, learn_sigma=learn_sigma,
                                           prediction=prediction)
        unknown = set(sample_cfg or {}) - set(DEFAULT_SAMPLE_CFG)
        if unknown:
            raise ValueError(f'Unknown sample_cfg keys {sorted(unknown)}; known: '
                             f'{sorted(DEFAULT_SAMPLE_CFG)}.')
        self.sample_cfg = dict(DEFAULT_SAMPLE_CFG, **(sample_cfg or {}))

    @property
    def num_classes(self) -> int:
        return self.denoiser.num_classes

    def forward(self, inputs: Optional[Tensor] = None, data_samples: Optional[list] = None,
                mode: str = 'loss'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(data_samples, inputs)
        raise ValueError(f'DiffusionModel supports mode "loss" and "predict", got {mode!r}.')

    def loss(self, inputs: Tensor, data_samples: list) -> Dict[str, Tensor]:
        """DiT's loss at uniformly drawn steps: ``loss`` (summed by MMEngine) and its parts
        ``mse`` and ``vb`` (logged only: their names lack "loss")."""
        labels = _labels(data_samples).to(inputs.device)
        self._check_labels(labels)
        t = torch.randint(0, self.diffusion.num_timesteps, (inputs.shape[0], ),
                          device=inputs.device)
        terms = self.diffusion.training_losses(self.denoiser, inputs, t, labels)
        out = dict(loss=terms['loss'].mean(), mse=terms['mse'].mean().detach())
        if 'vb' in terms:
            out['vb'] = terms['vb'].mean().detach()
        return out

    def _check_labels(self, labels: Tensor) -> None:
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f'Class labels must be in 0..{self.num_classes - 1} (the '
                             f'denoiser\'s num_classes), got {labels.tolist()}.')

    def sample_shape(self, batch_size: int) -> tuple:
        size = self.denoiser.input_size
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        return batch_size, self.denoiser.in_channels, height, width

    @torch.no_grad()
    def generate(self, labels: Tensor, seeds: Optional[Sequence[int]] = None,
                 **overrides) -> Tensor:
        """Samples in the diffusion's data space for ``labels`` (B,).

        Args:
            seeds: one seed per sample (default ``sample_cfg.seed + i``).
            overrides: ``sample_cfg`` entries for this call.
        """
        cfg = dict(self.sample_cfg, **overrides)
        device = next(self.denoiser.parameters()).device
        labels = torch.as_tensor(labels, dtype=torch.long, device=device)
        self._check_labels(labels)
        if seeds is None:
            seeds = [cfg['seed'] + i for i in range(len(labels))]
        generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
        diffusion = self.diffusion
        if cfg['steps'] not in (None, diffusion.num_timesteps):
            diffusion = diffusion.respace(cfg['steps'])
        was_training = self.denoiser.training
        self.denoiser.eval()  # no label dropout, BatchNorm statistics
        try:
            return diffusion.sample(self.denoiser, self.sample_shape(len(labels)), labels,
                                    sampler=cfg['sampler'], eta=cfg['eta'],
                                    cfg_scale=cfg['cfg_scale'], null_class=self.num_classes,
                                    guided_channels=cfg['guided_channels'],
                                    clip_denoised=cfg['clip_denoised'], generator=generators)
        finally:
            self.denoiser.train(was_training)

    def predict(self, data_samples: list, inputs: Optional[Tensor] = None
                ) -> List[BaseDataElement]:
        """One sample per data sample, of its ``gt_label``; the data set's ``sample_idx``
        (when given) picks the noise seed. ``inputs`` (real data) are not used.

        Returns:
            data elements with ``gt_label``, ``sample_idx`` and ``pred_image`` (C, H, W): a
            uint8 image for pixel-space models with a quantizing preprocessor, else the
            sample in the data's units (e.g. unscaled VAE latents).
        """
        labels = _labels(data_samples)
        indices = []
        for i, sample in enumerate(data_samples):
            idx = sample.get('sample_idx') if isinstance(sample, (dict, BaseDataElement)) \
                else None
            indices.append(int(idx) if idx is not None else i)
        # a large odd multiplier keeps the seeds of different `seed`s apart
        seeds = [self.sample_cfg['seed'] * 1_000_003 + idx for idx in indices]
        images = self.data_preprocessor.denormalize(self.generate(labels, seeds)).cpu()
        return [BaseDataElement(gt_label=int(label), sample_idx=idx, pred_image=image)
                for label, idx, image in zip(labels.tolist(), indices, images)]
