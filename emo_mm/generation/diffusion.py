"""Gaussian diffusion as DiT trains and samples it (improved DDPM with learned variances).

* Schedule: ``num_timesteps`` linear betas from 1e-4 to 2e-2, both scaled by
  ``1000 / num_timesteps`` so that other step counts keep the same total noise (improved
  DDPM's "linear" schedule; DiT uses it with 1000 steps).
* Network output: the prediction in the first C channels and, with learned sigma, C
  channels in [-1, 1] interpolating the log variance between the posterior variance (-1)
  and beta_t (1). The prediction is the noise ``eps`` (DiT) or the velocity
  ``v = sqrt(alphas_cumprod) eps - sqrt(1 - alphas_cumprod) x_0`` (``prediction='v'``,
  progressive distillation's parameterisation: in x_0 terms its MSE weights a step by
  SNR + 1 where the noise MSE weights it by SNR, so the high-noise steps that lay out an
  image get a real share of the training signal). The two convert exactly into each
  other, so the samplers, the variance and guidance are the same code for both.
* Training loss (DiT, improved DDPM's "hybrid" with loss type MSE): mean squared error on
  the prediction (noise or velocity) plus the variational bound term of the learned
  variance, in bits per dimension, computed with the predicted mean detached so that it
  only trains the variance. DiT does not rescale the VLB term (that would be loss type
  RESCALED_MSE, which multiplies it by num_timesteps / 1000); with 1000 steps both are
  the same.
* Respacing: sampling with a subset of the steps; betas are recomputed from the kept
  steps' cumulative alphas so that the marginals q(x_t | x_0) at kept steps are unchanged;
  the network still receives the original step index.
* Samplers: ancestral DDPM and DDIM (``eta``), with classifier-free guidance, drawing all
  noise from ``torch.Generator`` objects (one per batch or one per sample).

All schedule arithmetic runs in float64 (numpy) as in improved DDPM; the tensors handed to
the network are cast to the input's dtype per step.
"""
import math
from typing import Callable, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

Generators = Union[None, torch.Generator, Sequence[torch.Generator]]
Denoiser = Callable[[Tensor, Tensor, Tensor], Tensor]


def linear_betas(num_timesteps: int) -> np.ndarray:
    """Improved DDPM's linear schedule: 1e-4 .. 2e-2 at 1000 steps, scaled for others."""
    if num_timesteps < 1:
        raise ValueError(f'num_timesteps must be positive, got {num_timesteps}.')
    scale = 1000 / num_timesteps
    return np.linspace(scale * 1e-4, scale * 0.02, num_timesteps, dtype=np.float64)


def cosine_betas(num_timesteps: int, max_beta: float = 0.999) -> np.ndarray:
    """Improved DDPM's cosine schedule (offset 0.008), betas clipped at ``max_beta``."""

    def alpha_bar(t):
        return math.cos((t + 0.008) / 1.008 * math.pi / 2)**2

    return np.array([min(1 - alpha_bar((i + 1) / num_timesteps) / alpha_bar(i / num_timesteps),
                         max_beta) for i in range(num_timesteps)], dtype=np.float64)


BETA_SCHEDULES = {'linear': linear_betas, 'cosine': cosine_betas}
#: What the network's first C output channels predict: the noise (DiT) or the velocity.
PREDICTIONS = ('eps', 'v')


def space_timesteps(num_timesteps: int,
                    section_counts: Union[int, str, Sequence[int]]) -> List[int]:
    """The steps kept when sampling with fewer steps (improved DDPM's respacing rule).

    Args:
        num_timesteps: steps of the trained process.
        section_counts: an int N (N steps spread evenly, first and last step included),
            ``'ddimN'`` (every ``num_timesteps // N``-th step from 0, as DDIM), or a list of
            counts, one per equal section of the steps.

    Returns:
        Sorted list of the kept step indices.
    """
    if isinstance(section_counts, str):
        if not section_counts.startswith('ddim'):
            raise ValueError(f'section_counts: expected an int, a list or "ddimN", got '
                             f'{section_counts!r}.')
        count = int(section_counts[len('ddim'):])
        for stride in range(1, num_timesteps):
            if len(range(0, num_timesteps, stride)) == count:
                return list(range(0, num_timesteps, stride))
        raise ValueError(f'Cannot take exactly {count} evenly strided steps of {num_timesteps}.')
    if isinstance(section_counts, int):
        section_counts = [section_counts]
    size_per = num_timesteps // len(section_counts)
    extra = num_timesteps % len(section_counts)
    start, kept = 0, []
    for i, count in enumerate(section_counts):
        size = size_per + (1 if i < extra else 0)
        if not 1 <= count <= size:
            raise ValueError(f'Cannot take {count} steps from a section of {size} steps '
                             f'(num_timesteps={num_timesteps}, sections={list(section_counts)}).')
        stride = 1 if count <= 1 else (size - 1) / (count - 1)
        kept += [start + round(stride * j) for j in range(count)]
        start += size
    return sorted(set(kept))


def mean_flat(x: Tensor) -> Tensor:
    """Mean over all but the batch dimension."""
    return x.mean(dim=list(range(1, x.ndim)))


def normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))), elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2)**2 * torch.exp(-logvar2))


def approx_standard_normal_cdf(x: Tensor) -> Tensor:
    """The tanh approximation of the standard normal CDF that ADM / DiT's losses use."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def discretized_gaussian_log_likelihood(x: Tensor, means: Tensor, log_scales: Tensor) -> Tensor:
    """Log-likelihood of data in [-1, 1] quantised to 256 levels, elementwise, in nats.

    The outermost bins extend to infinity, so the 256 bins' probabilities sum to one.
    """
    centered = x - means
    inv_std = torch.exp(-log_scales)
    cdf_plus = approx_standard_normal_cdf(inv_std * (centered + 1.0 / 255.0))
    cdf_min = approx_standard_normal_cdf(inv_std * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus,
                       torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))


def _randn(shape: Sequence[int], generator: Generators, device, dtype) -> Tensor:
    """Standard normal noise; with one generator per sample, sample i uses generator i only,
    so a sample does not depend on the batch it is drawn in."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn(*shape, generator=generator, device=device, dtype=dtype)
    if len(generator) != shape[0]:
        raise ValueError(f'{len(generator)} generators for a batch of {shape[0]} samples.')
    return torch.stack([torch.randn(*shape[1:], generator=g, device=device, dtype=dtype)
                        for g in generator])


def classifier_free_guidance(denoiser: Denoiser, x: Tensor, t: Tensor, y: Tensor,
                             null_class: int, scale: float, channels: int,
                             guided_channels: Optional[int] = None) -> Tensor:
    """The guided prediction p_uncond + scale * (p_cond - p_uncond).

    Conditional and unconditional (null class) predictions run as one batch of 2B. Only
    the first ``guided_channels`` channels of the prediction are guided (default: all
    ``channels``); the remaining ones and the variance channels are the conditional
    prediction's. Guiding a velocity prediction is guiding the noise it stands for: the
    conversion is affine with the same x_t term for both halves.
    DiT's sampling script guides the first 3 of the 4 latent channels, an accident of its
    history kept for reproducibility; pass ``guided_channels=3`` to reproduce it.

    Args:
        denoiser: net(x, t, y) -> (B, C or 2C, H, W).
        channels: C, the data's channel count (the prediction channels of the output).
    """
    guided = channels if guided_channels is None else guided_channels
    if not 0 < guided <= channels:
        raise ValueError(f'guided_channels must be in 1..{channels}, got {guided_channels}.')
    out = denoiser(torch.cat([x, x]), torch.cat([t, t]),
                   torch.cat([y, torch.full_like(y, null_class)]))
    cond, uncond = out.chunk(2)
    guided_out = uncond[:, :guided] + scale * (cond[:, :guided] - uncond[:, :guided])
    return torch.cat([guided_out, cond[:, guided:]], dim=1)


class GaussianDiffusion:
    """Forward process, posterior, DiT's training loss and the samplers of one schedule.

    Args:
        betas: the schedule (float64), or None with ``num_timesteps`` / ``beta_schedule``.
        num_timesteps: steps of a named schedule.
        beta_schedule: ``'linear'`` (DiT) or ``'cosine'``.
        learn_sigma: the network predicts the variance interpolation too (2C channels);
            otherwise the variance is fixed to beta_t (improved DDPM's "fixed large").
        timestep_map: the network step index of each step of this process (respaced
            processes keep the original indices); default ``range(num_timesteps)``.
        prediction: ``'eps'`` (the noise, DiT) or ``'v'`` (the velocity).
    """

    def __init__(self,
                 betas: Optional[np.ndarray] = None,
                 num_timesteps: int = 1000,
                 beta_schedule: str = 'linear',
                 learn_sigma: bool = True,
                 timestep_map: Optional[Sequence[int]] = None,
                 prediction: str = 'eps'):
        if prediction not in PREDICTIONS:
            raise ValueError(f'prediction must be one of {PREDICTIONS}, got {prediction!r}.')
        self.prediction = prediction
        if betas is None:
            if beta_schedule not in BETA_SCHEDULES:
                raise ValueError(f'beta_schedule must be one of {sorted(BETA_SCHEDULES)}, got '
                                 f'{beta_schedule!r}.')
            betas = BETA_SCHEDULES[beta_schedule](num_timesteps)
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or not ((betas > 0) & (betas <= 1)).all():
            raise ValueError('betas must be a 1-D array of values in (0, 1].')
        self.betas = betas
        self.num_timesteps = len(betas)
        self.learn_sigma = learn_sigma
        self.timestep_map = np.arange(self.num_timesteps) if timestep_map is None \
            else np.asarray(timestep_map, dtype=np.int64)

        alphas = 1.0 - betas
        self.alphas_cumprod = np.cumprod(alphas)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.alphas_cumprod_next = np.append(self.alphas_cumprod[1:], 0.0)
        self.sqrt_alphas_cumprod = np.sqrt(self.alphas_cumprod)
        self.one_minus_alphas_cumprod = 1.0 - self.alphas_cumprod
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - self.alphas_cumprod)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1)
        # q(x_{t-1} | x_t, x_0) = N(coef1 * x_0 + coef2 * x_t, posterior_variance)
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (
            1.0 - self.alphas_cumprod)
        # the variance is 0 at t = 0: the log uses the value at t = 1 there
        self.posterior_log_variance_clipped = np.log(
            np.append(self.posterior_variance[1], self.posterior_variance[1:])
            if self.num_timesteps > 1 else self.betas)
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / (
            1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * np.sqrt(alphas) / (
            1.0 - self.alphas_cumprod)
        self.log_betas = np.log(betas)
        self.log_one_minus_alphas_cumprod = np.log(1.0 - self.alphas_cumprod)
        # "fixed large" variance: beta_t, with the posterior's variance at t = 0
        self.fixed_large_variance = np.append(self.posterior_variance[1], betas[1:]) \
            if self.num_timesteps > 1 else betas
        self.fixed_large_log_variance = np.log(self.fixed_large_variance)
        self._tables = {}

    # -- respacing -------------------------------------------------------------------------

    def respace(self, steps: Union[int, str, Sequence[int]]) -> 'GaussianDiffusion':
        """A process over a subset of the steps (``space_timesteps``'s rule for ``steps``)
        with betas recomputed so that alphas_cumprod at the kept steps is unchanged."""
        kept = space_timesteps(self.num_timesteps, steps)
        betas, last = [], 1.0
        for i in kept:
            betas.append(1 - self.alphas_cumprod[i] / last)
            last = self.alphas_cumprod[i]
        return GaussianDiffusion(np.array(betas), learn_sigma=self.learn_sigma,
                                 timestep_map=self.timestep_map[kept],
                                 prediction=self.prediction)

    # -- forward process and posterior ---------------------------------------------------

    def _gather(self, name: str, t: Tensor, like: Tensor) -> Tensor:
        """The schedule array ``name`` at steps ``t``, shaped to broadcast over ``like``."""
        key = (name, t.device)
        if key not in self._tables:  # converted once per array and device
            self._tables[key] = torch.from_numpy(getattr(self, name)).to(t.device)
        return self._tables[key][t].to(like.dtype).view(-1, *([1] * (like.ndim - 1)))

    def q_mean_variance(self, x_start: Tensor, t: Tensor):
        """Mean, variance and log variance of q(x_t | x_0)."""
        mean = self._gather('sqrt_alphas_cumprod', t, x_start) * x_start
        variance = self._gather('one_minus_alphas_cumprod', t, x_start)
        log_variance = self._gather('log_one_minus_alphas_cumprod', t, x_start)
        return mean, variance, log_variance

    def q_sample(self, x_start: Tensor, t: Tensor, noise: Optional[Tensor] = None) -> Tensor:
        """x_t = sqrt(alphas_cumprod_t) x_0 + sqrt(1 - alphas_cumprod_t) noise."""
        if noise is None:
            noise = torch.randn_like(x_start)
        return (self._gather('sqrt_alphas_cumprod', t, x_start) * x_start
                + self._gather('sqrt_one_minus_alphas_cumprod', t, x_start) * noise)

    def q_posterior_mean_variance(self, x_start: Tensor, x_t: Tensor, t: Tensor):
        """Mean, variance and clipped log variance of q(x_{t-1} | x_t, x_0)."""
        mean = (self._gather('posterior_mean_coef1', t, x_t) * x_start
                + self._gather('posterior_mean_coef2', t, x_t) * x_t)
        return (mean, self._gather('posterior_variance', t, x_t),
                self._gather('posterior_log_variance_clipped', t, x_t))

    def predict_xstart_from_eps(self, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        return (self._gather('sqrt_recip_alphas_cumprod', t, x_t) * x_t
                - self._gather('sqrt_recipm1_alphas_cumprod', t, x_t) * eps)

    def predict_eps_from_xstart(self, x_t: Tensor, t: Tensor, x_start: Tensor) -> Tensor:
        return ((self._gather('sqrt_recip_alphas_cumprod', t, x_t) * x_t - x_start)
                / self._gather('sqrt_recipm1_alphas_cumprod', t, x_t))

    def velocity(self, x_start: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """v = sqrt(alphas_cumprod_t) noise - sqrt(1 - alphas_cumprod_t) x_0."""
        return (self._gather('sqrt_alphas_cumprod', t, x_start) * noise
                - self._gather('sqrt_one_minus_alphas_cumprod', t, x_start) * x_start)

    def eps_from_prediction(self, x_t: Tensor, t: Tensor, prediction: Tensor) -> Tensor:
        """The noise the network's prediction stands for (eps = sqrt(a) v + sqrt(1 - a) x_t
        for velocities, a = alphas_cumprod_t)."""
        if self.prediction == 'eps':
            return prediction
        return (self._gather('sqrt_alphas_cumprod', t, x_t) * prediction
                + self._gather('sqrt_one_minus_alphas_cumprod', t, x_t) * x_t)

    # -- the model's p(x_{t-1} | x_t) -------------------------------------------------------

    def network_timesteps(self, t: Tensor) -> Tensor:
        """Step indices of this process -> the indices the network was trained with."""
        return self._gather('timestep_map', t, t).view(-1)

    def p_mean_variance(self, denoiser: Denoiser, x: Tensor, t: Tensor, y: Tensor,
                        clip_denoised: bool = False, model_output: Optional[Tensor] = None):
        """Mean, variance, log variance and predicted x_0 of p(x_{t-1} | x_t).

        Args:
            denoiser: net(x, t, y) called with the network's step indices.
            clip_denoised: clamp the predicted x_0 to [-1, 1] (pixel data; DiT's latents
                are not clipped).
            model_output: the network's output when already computed.

        Returns:
            dict with mean, variance, log_variance, pred_xstart, eps.
        """
        channels = x.shape[1]
        if model_output is None:
            model_output = denoiser(x, self.network_timesteps(t), y)
        expected = 2 * channels if self.learn_sigma else channels
        if model_output.shape[1] != expected:
            raise ValueError(f'The denoiser returned {model_output.shape[1]} channels for '
                             f'{channels}-channel data; expected {expected} (learn_sigma='
                             f'{self.learn_sigma}).')
        eps = self.eps_from_prediction(x, t, model_output[:, :channels])
        if self.learn_sigma:
            var_values = model_output[:, channels:]
            min_log = self._gather('posterior_log_variance_clipped', t, x)
            max_log = self._gather('log_betas', t, x)
            frac = (var_values + 1) / 2  # [-1, 1] -> [0, 1]
            log_variance = frac * max_log + (1 - frac) * min_log
            variance = torch.exp(log_variance)
        else:
            variance = self._gather('fixed_large_variance', t, x).expand_as(x)
            log_variance = self._gather('fixed_large_log_variance', t, x).expand_as(x)
        pred_xstart = self.predict_xstart_from_eps(x, t, eps)
        if clip_denoised:
            pred_xstart = pred_xstart.clamp(-1, 1)
        mean, _, _ = self.q_posterior_mean_variance(pred_xstart, x, t)
        return dict(mean=mean, variance=variance, log_variance=log_variance,
                    pred_xstart=pred_xstart, eps=eps)

    # -- training -------------------------------------------------------------------------

    def vb_terms_bpd(self, denoiser: Denoiser, x_start: Tensor, x_t: Tensor, t: Tensor,
                     y: Tensor, clip_denoised: bool = False,
                     model_output: Optional[Tensor] = None):
        """One term of the variational bound in bits per dimension, per sample.

        KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)) for t > 0 and the decoder's negative
        log-likelihood -log p(x_0 | x_1) (256 discrete levels) for t = 0.
        """
        true_mean, _, true_log_variance = self.q_posterior_mean_variance(x_start, x_t, t)
        out = self.p_mean_variance(denoiser, x_t, t, y, clip_denoised, model_output)
        kl = mean_flat(normal_kl(true_mean, true_log_variance, out['mean'],
                                 out['log_variance'])) / math.log(2.0)
        decoder_nll = -mean_flat(discretized_gaussian_log_likelihood(
            x_start, out['mean'], 0.5 * out['log_variance'])) / math.log(2.0)
        return dict(output=torch.where(t == 0, decoder_nll, kl), pred_xstart=out['pred_xstart'])

    def training_losses(self, denoiser: Denoiser, x_start: Tensor, t: Tensor, y: Tensor,
                        noise: Optional[Tensor] = None):
        """DiT's per-sample losses: ``mse`` (of the noise or velocity prediction) + ``vb``
        (learned variance) = ``loss``."""
        if noise is None:
            noise = torch.randn_like(x_start)
        x_t = self.q_sample(x_start, t, noise)
        model_output = denoiser(x_t, self.network_timesteps(t), y)
        channels = x_start.shape[1]
        terms = {}
        if self.learn_sigma:
            if model_output.shape[1] != 2 * channels:
                raise ValueError(f'learn_sigma needs {2 * channels} output channels, the '
                                 f'denoiser returned {model_output.shape[1]}.')
            prediction, var_values = model_output[:, :channels], model_output[:, channels:]
            # the VLB trains the variance only: the mean's prediction is detached
            frozen = torch.cat([prediction.detach(), var_values], dim=1)
            terms['vb'] = self.vb_terms_bpd(None, x_start, x_t, t, y,
                                            model_output=frozen)['output']
        else:
            prediction = model_output
        target = noise if self.prediction == 'eps' else self.velocity(x_start, t, noise)
        terms['mse'] = mean_flat((target - prediction)**2)
        terms['loss'] = terms['mse'] + terms['vb'] if 'vb' in terms else terms['mse']
        return terms

    # -- sampling -------------------------------------------------------------------------

    def _guided(self, denoiser: Denoiser, channels: int, null_class: Optional[int],
                cfg_scale: float, guided_channels: Optional[int]) -> Denoiser:
        if cfg_scale == 1.0:
            return denoiser
        if null_class is None:
            raise ValueError('Classifier-free guidance (cfg_scale != 1) needs the null class '
                             'index (the denoiser\'s num_classes).')
        return lambda x, t, y: classifier_free_guidance(denoiser, x, t, y, null_class,
                                                        cfg_scale, channels, guided_channels)

    @torch.no_grad()
    def sample(self, denoiser: Denoiser, shape: Sequence[int], y: Tensor,
               sampler: str = 'ddpm', eta: float = 0.0, cfg_scale: float = 1.0,
               null_class: Optional[int] = None, guided_channels: Optional[int] = None,
               clip_denoised: bool = False, generator: Generators = None,
               noise: Optional[Tensor] = None) -> Tensor:
        """Draws samples x_0 with this process's steps (respace first for fewer steps).

        Args:
            denoiser: net(x, t, y).
            shape: (B, C, H, W).
            y: (B,) class labels.
            sampler: ``'ddpm'`` (ancestral, with the model's variances) or ``'ddim'``.
            eta: DDIM's noise scale (0: deterministic given x_T).
            cfg_scale: classifier-free guidance scale (1: no guidance).
            null_class: the denoiser's null (unconditional) label, needed for guidance.
            guided_channels: prediction channels guided (default all; DiT's script: 3).
            clip_denoised: clamp predicted x_0 to [-1, 1] at each step.
            generator: a torch.Generator for the whole batch, or one per sample (then each
                sample is independent of the batch it is drawn in).
            noise: x_T (default: drawn from ``generator``).
        """
        if sampler not in ('ddpm', 'ddim'):
            raise ValueError(f'sampler must be "ddpm" or "ddim", got {sampler!r}.')
        device = y.device
        dtype = noise.dtype if noise is not None else torch.float32
        x = noise if noise is not None else _randn(shape, generator, device, dtype)
        net = self._guided(denoiser, shape[1], null_class, cfg_scale, guided_channels)
        for i in reversed(range(self.num_timesteps)):
            t = torch.full((shape[0], ), i, device=device, dtype=torch.long)
            out = self.p_mean_variance(net, x, t, y, clip_denoised)
            step_noise = _randn(shape, generator, device, x.dtype) if i > 0 else None
            if sampler == 'ddpm':
                x = out['mean'] if i == 0 else \
                    out['mean'] + torch.exp(0.5 * out['log_variance']) * step_noise
            else:
                x = self._ddim_step(x, t, out['pred_xstart'], eta, step_noise)
        return x

    def _ddim_step(self, x: Tensor, t: Tensor, pred_xstart: Tensor, eta: float,
                   noise: Optional[Tensor]) -> Tensor:
        # eps re-derived from the (possibly clipped) x_0 keeps the two consistent
        eps = self.predict_eps_from_xstart(x, t, pred_xstart)
        alpha_bar = self._gather('alphas_cumprod', t, x)
        alpha_bar_prev = self._gather('alphas_cumprod_prev', t, x)
        sigma = eta * torch.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar)) * torch.sqrt(
            1 - alpha_bar / alpha_bar_prev)
        mean = pred_xstart * torch.sqrt(alpha_bar_prev) + torch.sqrt(
            1 - alpha_bar_prev - sigma**2) * eps
        return mean if noise is None else mean + sigma * noise
