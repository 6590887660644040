"""mmaction2's VisualizationHook (``tools/test.py --show-dir`` on video configs).

Upstream: mmaction2 1.2.0 ``VisualizationHook`` cannot draw a test sample of emo_mm's video
configs, for two reasons in ``_draw_samples``:

- it passes ``show=`` to ``ActionVisualizer.add_datasample``, which has no such argument
  (it has ``show_frames``): "add_datasample() got an unexpected keyword argument 'show'";
- it takes each sample of ``data_batch['inputs']`` as one clip, ``(C, T, H, W)``; test
  pipelines with several crops or clips per video (``ThreeCrop``, ``num_clips > 1``: every
  V-EMO config's) give ``(views, C, T, H, W)``, and ``permute`` fails.

No upstream issue was found; checked against mmaction2 1.2.0 (mmaction2's own
tools/test.py --show-dir fails the same way).

Fix: the hook's ``show`` goes to ``show_frames``, and it draws the first view of a
multi-view sample (the prediction drawn is still the one of all views together).
"""
import importlib

#: The upstream module this fix changes; applied once it is imported.
TARGET = 'mmaction.engine.hooks.visualization_hook'


def apply() -> None:
    """Wraps ``VisualizationHook._draw_samples`` (idempotent)."""
    VisualizationHook = importlib.import_module(TARGET).VisualizationHook
    original = VisualizationHook._draw_samples
    if getattr(original, 'emo_mm_fix', False):
        return

    def draw_samples(self, batch_idx, data_batch, data_samples, step=0):
        if 'show' in self.draw_args:
            self.draw_args['show_frames'] = self.draw_args.pop('show')
        videos = data_batch['inputs']
        if any(video.dim() == 5 for video in videos):
            data_batch = dict(data_batch,
                              inputs=[video[0] if video.dim() == 5 else video for video in videos])
        return original(self, batch_idx, data_batch, data_samples, step)

    draw_samples.emo_mm_fix = True
    VisualizationHook._draw_samples = draw_samples
