"""The bundle folder: ONNX graph(s) and ``deploy.json``, read and written without torch.

A bundle is self-contained: everything a device needs to turn an image (or a clip) into
results is either in a graph or in ``deploy.json``::

    DIR/
      deploy.json      what this module writes and checks (fields below)
      end2end.onnx     the network with its task's post-processing
      postprocess.onnx only for slide-window segmentors: logits -> label map
      config.py        the resolved config the bundle was exported from (for tools/test.py
                       and for people; the predictor never reads it)

``deploy.json`` fields (``format_version`` 1):

* ``format`` (``'emo_mm-deploy'``), ``format_version``, ``emo_mm_version``;
* ``task``: ``classification`` | ``detection`` | ``segmentation`` | ``video``;
* ``toolbox`` (the config's ``default_scope``), ``config`` (``name``, ``file``: the copy),
  ``model_type`` (e.g. ``RetinaNet``), ``checkpoint`` (file name and sha256, or None);
* ``precision``: ``fp32``, or ``int8`` (the model graph quantized by onnxruntime: int8
  weights and activations around its convolutions and matrix multiplies, the task's
  post-processing in float);
* ``quantization`` (int8 only): the format, the calibration (split, number of files), the
  nodes kept in float with the reason for each group (the sensitivity pass's measured
  errors) and the error of the whole network against fp32
  (:func:`emo_mm.deploy.sensitivity.quantize_within_budget`);
* ``graphs``: per role (``model``, ``postprocess``) the file and its inputs and outputs
  (name, dtype, shape with ``null`` for dynamic axes);
* ``input``: ``{'mode': 'fixed', 'size': [H, W]}`` or ``{'mode': 'dynamic',
  'size_divisor': D}`` (the graph's image height and width);
* ``preprocess``: the steps from a decoded image to the graph's input (see
  :mod:`emo_mm.deploy.preprocess`), with ``mean``, ``std``, ``bgr_to_rgb`` and padding;
* ``postprocess``: task values, some baked into the graph (detection: ``score_thr``,
  ``nms_pre``, ``iou_threshold``, ``max_per_img``, ``min_bbox_size``; segmentation:
  ``mode``, ``crop_size``, ``stride``, ``num_classes``; video: ``average_clips``);
* ``classes``: class names, in label order;
* ``files``: sha256 of every file above except ``deploy.json``; a bundle whose files are
  missing or changed is refused when read.
"""
import hashlib
import json
import os
import os.path as osp
import shutil
import tempfile
from typing import Dict, Optional

BUNDLE_FILE = 'deploy.json'
FORMAT = 'emo_mm-deploy'
FORMAT_VERSION = 1
TASKS = ('classification', 'detection', 'segmentation', 'video')
#: Numeric precisions a bundle can hold.
PRECISIONS = ('fp32', 'int8')


class BundleError(ValueError):
    """A bundle folder that cannot be used (missing or changed files, unknown format)."""


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def is_bundle(path: str) -> bool:
    """Whether ``path`` is a folder with a ``deploy.json`` (checked or not)."""
    return osp.isdir(path) and osp.isfile(osp.join(path, BUNDLE_FILE))


def read_bundle(folder: str, verify: bool = True) -> Dict:
    """Reads and validates ``folder/deploy.json``.

    Args:
        folder (str): The bundle folder.
        verify (bool): Check every listed file's sha256 (reads the graphs once).

    Returns:
        dict: The manifest, with ``root`` (the folder's absolute path) added.

    Raises:
        BundleError: Not a bundle, an unknown format version, a missing or changed file.
    """
    if not osp.isdir(folder):
        raise BundleError(f'{folder} is not a folder: give the folder tools/deploy.py wrote '
                          '(it holds deploy.json and the .onnx graphs).')
    path = osp.join(folder, BUNDLE_FILE)
    if not osp.isfile(path):
        raise BundleError(f'{folder} has no {BUNDLE_FILE}: not a deploy bundle (write one with '
                          'tools/deploy.py CONFIG CHECKPOINT --out DIR).')
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, ValueError) as err:
        raise BundleError(f'{path} is not readable JSON ({err}); export the bundle again.')
    if not isinstance(manifest, dict) or manifest.get('format') != FORMAT:
        raise BundleError(f'{path} is not an emo_mm deploy manifest (format != {FORMAT!r}).')
    version = manifest.get('format_version')
    if version != FORMAT_VERSION:
        raise BundleError(f'{path} has format version {version}; this emo_mm reads version '
                          f'{FORMAT_VERSION}. Export the bundle again with this emo_mm.')
    for key in ('task', 'graphs', 'preprocess', 'postprocess', 'files', 'input'):
        if key not in manifest:
            raise BundleError(f'{path} lacks the field {key!r}; export the bundle again.')
    if manifest['task'] not in TASKS:
        raise BundleError(f'{path}: unknown task {manifest["task"]!r} (known: {TASKS}).')
    if manifest.get('precision', 'fp32') not in PRECISIONS:
        raise BundleError(f'{path}: unknown precision {manifest["precision"]!r} (known: '
                          f'{PRECISIONS}); export the bundle again with this emo_mm.')
    for graph in manifest['graphs'].values():
        if graph['file'] not in manifest['files']:
            raise BundleError(f'{path}: graph {graph["file"]} has no checksum in "files".')
    for name, digest in manifest['files'].items():
        file = osp.join(folder, name)
        if not osp.isfile(file):
            raise BundleError(f'The bundle {folder} is missing {name}; copy the whole folder '
                              'or export it again.')
        if verify and sha256(file) != digest:
            raise BundleError(f'{name} in {folder} does not match its checksum in '
                              f'{BUNDLE_FILE} (changed or truncated); export the bundle again.')
    manifest['root'] = osp.abspath(folder)
    return manifest


def graph_path(manifest: Dict, role: str = 'model') -> str:
    return osp.join(manifest['root'], manifest['graphs'][role]['file'])


def check_output_folder(out: str) -> Optional[Dict]:
    """Applies the overwrite rule to ``--out``; returns the existing manifest if replaced.

    A folder that does not exist or is empty is written; one that holds a bundle and
    nothing else (only the files its ``deploy.json`` lists) is replaced; anything else
    (other files, a file in place of the folder) is refused, so nothing a user put there
    is ever deleted.
    """
    if not osp.exists(out):
        return None
    if not osp.isdir(out):
        raise BundleError(f'--out {out} is a file, not a folder; choose a folder for the bundle.')
    entries = set(os.listdir(out))
    if not entries:
        return None
    if BUNDLE_FILE not in entries:
        raise BundleError(f'--out {out} is a non-empty folder that is not a bundle; refusing to '
                          'write into it. Choose a new or empty folder.')
    try:
        with open(osp.join(out, BUNDLE_FILE)) as f:
            manifest = json.load(f)
        own = set(manifest.get('files', {})) | {BUNDLE_FILE}
    except (OSError, ValueError, AttributeError):
        raise BundleError(f'--out {out} holds an unreadable {BUNDLE_FILE}; refusing to '
                          'replace it. Remove the folder or choose another.')
    foreign = sorted(entries - own)
    if foreign:
        raise BundleError(f'--out {out} holds a bundle and other files ({", ".join(foreign[:3])}'
                          '); refusing to replace it. Move them or choose another folder.')
    return manifest


class BundleWriter:
    """Writes a bundle into a temporary sibling folder and moves it into place at the end.

    An interrupted export leaves the previous bundle (or nothing) at ``out``, never a
    half-written one. Usage::

        with BundleWriter(out) as writer:
            path = writer.path('end2end.onnx')   # write the file there
            writer.add('end2end.onnx')
            writer.finish(manifest)              # checksums, deploy.json, move into place
    """

    def __init__(self, out: str):
        self.out = osp.abspath(out)
        self.replaced = check_output_folder(self.out)
        parent = osp.dirname(self.out)
        os.makedirs(parent, exist_ok=True)
        self.tmp = tempfile.mkdtemp(prefix='.' + osp.basename(self.out) + '.', dir=parent)
        self.files = []

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        shutil.rmtree(self.tmp, ignore_errors=True)
        return False

    def path(self, name: str) -> str:
        return osp.join(self.tmp, name)

    def add(self, name: str) -> None:
        if not osp.isfile(self.path(name)):
            raise FileNotFoundError(f'{name} was not written to the bundle.')
        self.files.append(name)

    def finish(self, manifest: Dict) -> str:
        manifest = dict(manifest)
        manifest['files'] = {name: sha256(self.path(name)) for name in self.files}
        with open(self.path(BUNDLE_FILE), 'w') as f:
            json.dump(manifest, f, indent=2)
            f.write('\n')
        if osp.isdir(self.out):
            # Only a bundle (checked in __init__) or an empty folder is replaced.
            old = self.tmp + '.old'
            os.replace(self.out, old)
            os.replace(self.tmp, self.out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.tmp, self.out)
        return self.out
