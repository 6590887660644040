"""Gaussian diffusion (DiT's schedule, loss, respacing, samplers) against closed forms."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from emo_mm.generation.diffusion import (GaussianDiffusion, classifier_free_guidance,
                                         discretized_gaussian_log_likelihood, linear_betas,
                                         space_timesteps)


class TinyDenoiser(nn.Module):
    """A small stand-in with the denoiser interface: net(x, t, y) -> (B, 2C, H, W)."""

    def __init__(self, in_channels=3, num_classes=4, input_size=8, learn_sigma=True,
                 class_dropout_prob=0.1):
        super().__init__()
        self.in_channels, self.num_classes, self.input_size = in_channels, num_classes, input_size
        self.learn_sigma, self.patch_size = learn_sigma, 1
        self.class_dropout_prob = class_dropout_prob
        self.label_embed = nn.Embedding(num_classes + 1, 16)
        self.time_embed = nn.Linear(1, 16)
        self.body = nn.Conv2d(in_channels + 16, 16, 3, padding=1)
        self.out = nn.Conv2d(16, in_channels * (2 if learn_sigma else 1), 3, padding=1)

    def forward(self, x, t, y):
        if self.training and self.class_dropout_prob > 0:
            drop = torch.rand(y.shape[0], device=y.device) < self.class_dropout_prob
            y = torch.where(drop, torch.full_like(y, self.num_classes), y)
        c = self.label_embed(y) + self.time_embed(t.float()[:, None] / 1000)
        h = torch.cat([x, c[:, :, None, None].expand(-1, -1, *x.shape[2:])], 1)
        out = self.out(torch.relu(self.body(h)))
        if self.learn_sigma:  # variance values must lie in [-1, 1]
            channels = self.in_channels
            out = torch.cat([out[:, :channels], torch.tanh(out[:, channels:])], 1)
        return out


def test_linear_schedule_endpoints():
    diffusion = GaussianDiffusion(num_timesteps=1000)
    assert diffusion.betas[0] == pytest.approx(1e-4) and diffusion.betas[-1] == pytest.approx(0.02)
    assert diffusion.alphas_cumprod[0] == pytest.approx(1 - 1e-4)
    # log prod(1 - b) = -sum(b + b^2 / 2 + b^3 / 3 + ...) = -(10.05 + 0.0667 + 0.0007)
    assert math.log(diffusion.alphas_cumprod[-1]) == pytest.approx(-10.1174, abs=0.002)
    assert np.all(np.diff(diffusion.alphas_cumprod) < 0)
    # other step counts scale the betas by 1000 / T
    assert linear_betas(250)[[0, -1]] == pytest.approx([4e-4, 0.08])


def test_q_sample_statistics():
    diffusion = GaussianDiffusion()
    x_start = torch.full((20000, 1, 1, 1), 0.7)
    for step in (0, 100, 500, 999):
        t = torch.full((20000, ), step)
        x_t = diffusion.q_sample(x_start, t)
        acp = diffusion.alphas_cumprod[step]
        assert x_t.mean().item() == pytest.approx(0.7 * math.sqrt(acp), abs=0.02)
        assert x_t.std().item() == pytest.approx(math.sqrt(1 - acp), rel=0.03, abs=0.002)


def test_posterior_against_bayes_rule():
    """q(x_{t-1} | x_t, x_0) from the product of q(x_{t-1} | x_0) and q(x_t | x_{t-1})."""
    diffusion = GaussianDiffusion()
    x_start = torch.randn(5, 2, 3, 3, dtype=torch.float64)
    x_t = torch.randn(5, 2, 3, 3, dtype=torch.float64)
    t = torch.tensor([1, 10, 300, 700, 999])
    mean, variance, log_variance = diffusion.q_posterior_mean_variance(x_start, x_t, t)
    for i, step in enumerate(t.tolist()):
        beta, acp_prev = diffusion.betas[step], diffusion.alphas_cumprod[step - 1]
        precision = 1 / (1 - acp_prev) + (1 - beta) / beta
        expected_mean = (math.sqrt(acp_prev) * x_start[i] / (1 - acp_prev)
                         + math.sqrt(1 - beta) * x_t[i] / beta) / precision
        torch.testing.assert_close(mean[i], expected_mean)
        assert variance[i].item() == pytest.approx(1 / precision, rel=1e-9)
        assert log_variance[i].item() == pytest.approx(math.log(1 / precision), rel=1e-9)


def test_vlb_terms_are_kl_and_decoder_nll():
    diffusion = GaussianDiffusion()
    x_start = torch.rand(6, 3, 4, 4) * 2 - 1
    x_start[:, 0, 0, 0] = 1.0  # the open-ended outer bins too
    x_start[:, 0, 0, 1] = -1.0
    t = torch.tensor([0, 0, 0, 5, 400, 999])
    noise = torch.randn(6, 3, 4, 4)
    x_t = diffusion.q_sample(x_start, t, noise)
    # eps near the truth keeps the decoder's Gaussian on the data (where the tanh CDF
    # approximation that ADM / DiT use is accurate); the variances are arbitrary
    output = torch.cat([noise + 0.1 * torch.randn(6, 3, 4, 4), torch.rand(6, 3, 4, 4) * 2 - 1], 1)
    terms = diffusion.vb_terms_bpd(None, x_start, x_t, t, None, model_output=output)['output']
    p = diffusion.p_mean_variance(None, x_t, t, None, model_output=output)
    std = torch.exp(0.5 * p['log_variance'])
    # t = 0: -log p(x_0 | x_1) with the exact normal CDF on 256 bins (outer bins open)
    normal = torch.distributions.Normal(p['mean'], std)
    upper = torch.where(x_start > 0.999, torch.ones_like(x_start), normal.cdf(x_start + 1 / 255))
    lower = torch.where(x_start < -0.999, torch.zeros_like(x_start),
                        normal.cdf(x_start - 1 / 255))
    nll = -torch.log(upper - lower).mean(dim=(1, 2, 3)) / math.log(2)
    torch.testing.assert_close(terms[:3], nll[:3], rtol=2e-3, atol=2e-3)
    # t > 0: KL between the true posterior and the model's Gaussian, in bits
    true_mean, _, true_log_var = diffusion.q_posterior_mean_variance(x_start, x_t, t)
    kl = torch.distributions.kl_divergence(
        torch.distributions.Normal(true_mean, torch.exp(0.5 * true_log_var)), normal)
    torch.testing.assert_close(terms[3:], kl.mean(dim=(1, 2, 3))[3:] / math.log(2),
                               rtol=1e-4, atol=1e-6)


def test_discretized_likelihood_sums_to_one():
    levels = torch.linspace(-1, 1, 256)
    log_probs = discretized_gaussian_log_likelihood(levels, torch.full_like(levels, 0.1),
                                                    torch.full_like(levels, math.log(0.3)))
    assert log_probs.exp().sum().item() == pytest.approx(1.0, abs=1e-5)


def test_training_loss_vb_trains_only_the_variance():
    diffusion = GaussianDiffusion()
    x_start, noise = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    t = torch.tensor([0, 3, 500, 999])
    output = torch.cat([torch.randn(4, 3, 8, 8), torch.rand(4, 3, 8, 8) * 2 - 1], 1)
    output.requires_grad_(True)
    terms = diffusion.training_losses(lambda *_: output, x_start, t, None, noise)
    torch.testing.assert_close(terms['loss'], terms['mse'] + terms['vb'])
    terms['loss'].sum().backward()
    eps = output.detach()[:, :3]
    # the eps channels get the MSE's gradient only
    torch.testing.assert_close(output.grad[:, :3], 2 * (eps - noise) / (3 * 8 * 8))
    assert output.grad[:, 3:].abs().sum() > 0


def test_respacing_keeps_alphas_cumprod():
    diffusion = GaussianDiffusion()
    kept = space_timesteps(1000, 250)
    assert len(kept) == 250 and kept[0] == 0 and kept[-1] == 999
    spaced = diffusion.respace(250)
    np.testing.assert_allclose(spaced.alphas_cumprod, diffusion.alphas_cumprod[kept], rtol=1e-12)
    assert spaced.timestep_map.tolist() == kept
    assert space_timesteps(1000, 'ddim50') == list(range(0, 1000, 20))
    assert space_timesteps(100, [10, 5]) == [
        0, 5, 11, 16, 22, 27, 33, 38, 44, 49, 50, 62, 74, 87, 99]
    with pytest.raises(ValueError, match='Cannot take'):
        space_timesteps(10, 11)
    # the network gets the original step indices
    seen = []
    spaced.p_mean_variance(
        lambda x, t, y: seen.append(t) or torch.zeros(1, 2, 1, 1), torch.zeros(1, 1, 1, 1),
        torch.tensor([249]), None)
    assert seen[0].tolist() == [999]


def _gaussian_oracle(diffusion, mu, s, prediction='eps'):
    """The exact prediction E[eps | x_t] (or E[v | x_t]) when the data is N(mu, s^2)."""

    def denoiser(x, t, y):
        acp = torch.from_numpy(diffusion.alphas_cumprod).float()[t].view(-1, 1, 1, 1)
        eps = (1 - acp).sqrt() * (x - acp.sqrt() * mu) / (acp * s**2 + 1 - acp)
        if prediction == 'eps':
            return eps
        x_start = (x - (1 - acp).sqrt() * eps) / acp.sqrt()
        return acp.sqrt() * eps - (1 - acp).sqrt() * x_start

    return denoiser


@pytest.mark.parametrize('sampler,steps,prediction', [('ddim', 100, 'eps'),
                                                      ('ddpm', 1000, 'eps'),
                                                      ('ddim', 100, 'v'), ('ddpm', 250, 'v')])
def test_samplers_reproduce_gaussian_data(sampler, steps, prediction):
    base = GaussianDiffusion(learn_sigma=False, prediction=prediction)
    spaced = base.respace(steps)
    mu, s = 0.3, 0.5
    oracle = _gaussian_oracle(base, mu, s, prediction)

    def denoiser(x, t, y):  # receives original step indices
        return oracle(x, t, y)

    y = torch.zeros(3000, dtype=torch.long)
    x = spaced.sample(denoiser, (3000, 1, 1, 1), y, sampler=sampler,
                      generator=torch.Generator().manual_seed(0))
    assert x.mean().item() == pytest.approx(mu, abs=0.03)
    assert x.std().item() == pytest.approx(s, rel=0.06)


@pytest.mark.parametrize('steps', [1000, 50])
def test_velocity_prediction_converts_exactly(steps):
    """A network that outputs the true velocity gives back x_0 and the noise exactly, at
    every step of the full and of a respaced process, and zero loss."""
    base = GaussianDiffusion(prediction='v')
    process = base.respace(steps)
    assert process.prediction == 'v'
    x_start = torch.randn(5, 3, 4, 4, dtype=torch.float64)
    noise = torch.randn(5, 3, 4, 4, dtype=torch.float64)
    t = torch.tensor([0, 1, steps // 2, steps - 2, steps - 1])
    x_t = process.q_sample(x_start, t, noise)
    net_t = process.network_timesteps(t)
    # the network sees original step indices: its velocity is the base process's
    velocity = base.velocity(x_start, net_t, noise)
    var_values = torch.zeros_like(x_start)

    def oracle(x, t_net, y):
        assert torch.equal(t_net, net_t)
        return torch.cat([velocity, var_values], 1)

    out = process.p_mean_variance(oracle, x_t, t, None)
    torch.testing.assert_close(out['pred_xstart'], x_start, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(out['eps'], noise, rtol=1e-9, atol=1e-9)
    terms = process.training_losses(oracle, x_start, t, None, noise)
    assert terms['mse'].abs().max() < 1e-18
    # read as a noise predictor the same output is wrong once the noise is large (near
    # t = 0, v is almost the noise)
    as_eps = GaussianDiffusion(np.array(process.betas), timestep_map=process.timestep_map)
    assert (as_eps.training_losses(oracle, x_start, t, None, noise)['mse'][2:] > 0.5).all()
    with pytest.raises(ValueError, match="prediction must be one of \\('eps', 'v'\\)"):
        GaussianDiffusion(prediction='x0')


def test_ddim_eta0_is_deterministic_and_samples_do_not_depend_on_the_batch():
    torch.manual_seed(0)
    net = TinyDenoiser().eval()
    spaced = GaussianDiffusion().respace(10)
    y = torch.tensor([0, 1, 2])
    noise = torch.randn(3, 3, 8, 8)
    a = spaced.sample(net, noise.shape, y, sampler='ddim', noise=noise,
                      generator=torch.Generator().manual_seed(1))
    b = spaced.sample(net, noise.shape, y, sampler='ddim', noise=noise,
                      generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    # eta > 0 and DDPM use the generator's noise: one generator per sample makes a sample
    # independent of its batch companions (up to the float rounding of batched convs)
    for sampler, eta in (('ddim', 1.0), ('ddpm', 0.0)):
        gens = [torch.Generator().manual_seed(s) for s in (5, 6, 7)]
        full = spaced.sample(net, (3, 3, 8, 8), y, sampler=sampler, eta=eta, generator=gens)
        alone = spaced.sample(net, (1, 3, 8, 8), y[1:2], sampler=sampler, eta=eta,
                              generator=[torch.Generator().manual_seed(6)])
        torch.testing.assert_close(full[1:2], alone, rtol=1e-3, atol=1e-3)
        other = spaced.sample(net, (1, 3, 8, 8), y[1:2], sampler=sampler, eta=eta,
                              generator=[torch.Generator().manual_seed(8)])
        assert not torch.allclose(alone, other)


def test_classifier_free_guidance():
    torch.manual_seed(0)
    net = TinyDenoiser(num_classes=4).eval()
    x, t, y = torch.randn(2, 3, 8, 8), torch.tensor([10, 500]), torch.tensor([1, 3])
    cond, uncond = net(x, t, y), net(x, t, torch.full_like(y, 4))
    torch.testing.assert_close(classifier_free_guidance(net, x, t, y, 4, 1.0, 3), cond)
    guided = classifier_free_guidance(net, x, t, y, 4, 4.0, 3)
    torch.testing.assert_close(guided[:, :3], uncond[:, :3] + 4 * (cond[:, :3] - uncond[:, :3]))
    torch.testing.assert_close(guided[:, 3:], cond[:, 3:])  # variances: conditional
    # DiT's script guides only the first 3 (of 4 latent) channels
    partial = classifier_free_guidance(net, x, t, y, 4, 4.0, 3, guided_channels=2)
    torch.testing.assert_close(partial[:, :2], guided[:, :2])
    torch.testing.assert_close(partial[:, 2:], cond[:, 2:])


def _tiny_model(prediction='eps', **sample_cfg):
    from emo_mm.generation import DiffusionModel
    return DiffusionModel(TinyDenoiser(num_classes=4), prediction=prediction,
                          sample_cfg=dict(steps=5, **sample_cfg),
                          data_preprocessor=dict(type='emo_mm.DiffusionDataPreprocessor',
                                                 mean=127.5, std=127.5, quantize=True))


@pytest.mark.parametrize('prediction', ['eps', 'v'])
def test_diffusion_model_loss_and_predict(prediction):
    from mmengine.structures import BaseDataElement
    torch.manual_seed(0)
    model = _tiny_model(prediction, cfg_scale=2.0, clip_denoised=True)
    assert model.diffusion.prediction == prediction
    images = [torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8) for _ in range(4)]
    samples = [BaseDataElement(gt_label=i % 4, sample_idx=i) for i in range(4)]
    data = model.data_preprocessor(dict(inputs=images, data_samples=samples), training=True)
    assert data['inputs'].abs().max() <= 1
    losses = model(**data, mode='loss')
    assert set(losses) == {'loss', 'mse', 'vb'} and losses['loss'].requires_grad
    losses['loss'].backward()
    model.eval()
    out = model(None, samples, mode='predict')
    assert [o.gt_label for o in out] == [0, 1, 2, 3]
    assert out[0].pred_image.dtype == torch.uint8 and out[0].pred_image.shape == (3, 8, 8)
    # the sample of data set index 2 does not depend on its batch
    again = model(None, samples[2:3], mode='predict')
    torch.testing.assert_close(again[0].pred_image.float(), out[2].pred_image.float(), atol=1,
                               rtol=0)
    with pytest.raises(ValueError, match='Class labels must be in 0..3'):
        model(None, [BaseDataElement(gt_label=4)], mode='predict')
    with pytest.raises(ValueError, match='learn_sigma'):
        from emo_mm.generation import DiffusionModel
        DiffusionModel(TinyDenoiser(), learn_sigma=False)


def test_latent_dataset(tmp_path):
    from emo_mm.generation import LatentDataset
    np.save(tmp_path / 'latents.npy', np.random.randn(5, 4, 2, 2).astype(np.float16))
    np.save(tmp_path / 'labels.npy', np.arange(5, dtype=np.int64))
    (tmp_path / 'classes.txt').write_text('\n'.join(f'c{i}' for i in range(5)))
    dataset = LatentDataset(str(tmp_path), num_classes=5)
    item = dataset[3]
    assert item['inputs'].dtype == torch.float32 and item['inputs'].shape == (4, 2, 2)
    assert item['data_samples'].gt_label == 3 and dataset.metainfo['classes'][3] == 'c3'
    with pytest.raises(ValueError, match='outside the 3 classes'):
        LatentDataset(str(tmp_path), num_classes=3)
    np.save(tmp_path / 'labels.npy', np.arange(4, dtype=np.int64))
    with pytest.raises(ValueError, match='expected 5 integer labels'):
        LatentDataset(str(tmp_path))
    with pytest.raises(FileNotFoundError, match='latents.npy'):
        LatentDataset(str(tmp_path / 'missing'))


def test_frechet_distance_closed_form():
    from emo_mm.generation.metrics import frechet_distance

    # diagonal covariances: |m1 - m2|^2 + sum (s1 - s2)^2 over the standard deviations
    m1, m2 = np.array([0., 1.]), np.array([1., 3.])
    c1, c2 = np.diag([4., 9.]), np.diag([1., 1.])
    assert frechet_distance(m1, c1, m2, c2) == pytest.approx(5 + 1 + 4)
    rotation = np.array([[0.6, -0.8], [0.8, 0.6]])
    c3 = rotation @ np.diag([2., 0.5]) @ rotation.T
    assert frechet_distance(m1, c3, m1, c3) == pytest.approx(0, abs=1e-9)


def test_imagenet_configs_build_the_diffusion_model(tmp_path):
    import os.path as osp

    from mmengine.config import Config
    from mmengine.registry import DATASETS, MODELS, init_default_scope

    from emo_mm.generation import DiffusionModel, LatentDataset
    repo = osp.dirname(osp.dirname(osp.abspath(__file__)))
    cfg = Config.fromfile(osp.join(repo, 'configs', 'dit', 'd-emo-s-2_imagenet256.py'))
    init_default_scope(cfg.default_scope)
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    assert isinstance(model, DiffusionModel) and model.diffusion.num_timesteps == 1000
    assert model.sample_cfg['steps'] == 250 and model.num_classes == 1000
    np.save(tmp_path / 'latents.npy', np.zeros((2, 4, 32, 32), np.float16))
    np.save(tmp_path / 'labels.npy', np.array([0, 999]))
    dataset = DATASETS.build(dict(cfg.train_dataloader.dataset, data_root=str(tmp_path)))
    assert isinstance(dataset, LatentDataset) and len(dataset) == 2


def test_sample_tool_draws_a_grid_and_refuses_wrong_checkpoints(tmp_path, capsys, monkeypatch):
    """tools/misc/sample.py: a checkpoint of the config's model gives a grid; another model's
    checkpoint and pickled objects are refused with one-line errors (exit 2)."""
    import os.path as osp
    import sys

    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    from PIL import Image

    from emo_mm.engine import run_cli
    from helpers import REPO, load_tool
    config = osp.join(REPO, 'configs', 'dit', 'd-emo-tiny_shapes32.py')
    cfg = Config.fromfile(config)
    init_default_scope('emo_mm')
    model = MODELS.build(cfg.model)
    good, wrong, pickled = (tmp_path / f'{name}.pth' for name in ('good', 'wrong', 'pickled'))
    torch.save(dict(state_dict=model.state_dict()), good)
    torch.save(dict(state_dict=model.state_dict(), meta=np.zeros(2)), pickled)
    cfg.model.denoiser.arch.hidden = 48
    torch.save(dict(state_dict=MODELS.build(cfg.model).state_dict()), wrong)

    tool = load_tool('misc/sample')
    grid = tmp_path / 'grid.png'

    def run(checkpoint, *extra):
        monkeypatch.setattr(sys, 'argv', [
            'sample.py', config, str(checkpoint), '--classes', '0', '4', '--n-per-class', '2',
            '--steps', '2', '--class-names', *[f'c{i}' for i in range(9)], '--device', 'cpu',
            '--out', str(grid), *extra])
        run_cli(tool.main)

    run(good)
    assert Image.open(grid).size[0] > 2 * 32
    assert '4 samples (2 classes x 2)' in capsys.readouterr().out
    for checkpoint, message in ((wrong, 'does not match the model'),
                                (pickled, 'pass --trust-checkpoint')):
        with pytest.raises(SystemExit) as exit_info:
            run(checkpoint)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
    run(pickled, '--trust-checkpoint')
    assert '4 samples' in capsys.readouterr().out
