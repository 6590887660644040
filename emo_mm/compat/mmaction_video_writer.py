"""mmaction2's video output without moviepy 1.x.

Upstream: mmaction2 1.2.0 ``LocalVisBackend.add_video`` (used by its
``tools/visualizations/browse_dataset.py``, which asks for ``out_type='video'``) writes
GIF / MP4 files through ``moviepy.editor``: moviepy is not a dependency of mmaction2, and
``moviepy.editor`` no longer exists in moviepy >= 2.0, so the tool stops with "Please
install moviepy to enable output file". No upstream issue was found; checked against
mmaction2 1.2.0.

Fix: when ``moviepy.editor`` cannot be imported, ``out_type='video'`` is written with
OpenCV's ``VideoWriter`` (MPEG-4, the codec emo_mm's demo videos use; same file name);
``'gif'`` is refused with a message naming the alternatives.
"""
import importlib
import importlib.util
import os
import os.path as osp

#: The upstream module this fix changes; applied once it is imported.
TARGET = 'mmaction.visualization.video_backend'


def moviepy_editor_available() -> bool:
    try:
        return importlib.util.find_spec('moviepy.editor') is not None
    except ImportError:  # no moviepy at all
        return False


def apply() -> None:
    """Wraps mmaction2's ``LocalVisBackend.add_video`` (idempotent; a no-op with moviepy 1)."""
    LocalVisBackend = importlib.import_module(TARGET).LocalVisBackend
    original = LocalVisBackend.add_video
    if getattr(original, 'emo_mm_fix', False) or moviepy_editor_available():
        return

    def add_video(self, name, frames, step=0, fps=4, out_type='img', **kwargs):
        if out_type == 'img':
            return original(self, name, frames, step=step, fps=fps, out_type=out_type, **kwargs)
        if out_type != 'video':
            raise RuntimeError(f"out_type={out_type!r} needs moviepy 1.x (moviepy.editor); "
                               "use 'video' (MP4, written with OpenCV) or 'img' (frames).")
        import cv2
        os.makedirs(self._save_dir, exist_ok=True)
        path = osp.join(self._save_dir, osp.splitext(name)[0] + '.mp4')
        height, width = frames[0].shape[:2]
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), fps, (width, height))
        if not writer.isOpened():
            raise RuntimeError(f'OpenCV cannot write MPEG-4 video to {path}.')
        for frame in frames:  # the frames are RGB
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        writer.release()

    add_video.emo_mm_fix = True
    LocalVisBackend.add_video = add_video
