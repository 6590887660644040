"""emo_mm: EMOv2 / EMOv1 backbones for the OpenMMLab 2.x toolboxes.

The OpenMMLab stack is pinned in requirements/ and installed by ``make setup``
(tools/dev/setup_env.sh), which also builds mmcv with compiled ops; ``install_requires``
only lists what emo_mm imports directly, with ranges the pins satisfy.

Like mmdet and mmpretrain, the package carries its configs, tools and model index in
``emo_mm/.mim``, where MMEngine (``_base_ = ['emo_mm::...']``) and MIM (``mim search``,
``mim train emo_mm ...``) look for them. Wheels get copies (made in the build tree, so the
source tree is never changed); editable installs get links to the repository's folders.
"""
import os
import os.path as osp
import re
import shutil
import sys

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = osp.dirname(osp.abspath(__file__))
#: What emo_mm/.mim holds, relative to the repository root (absent ones are skipped:
#: model-index.yml and the metafiles come with the model zoo).
MIM_CONTENT = ('configs', 'tools', 'model-index.yml')
EDITABLE_COMMANDS = ('develop', 'editable_wheel')


def version() -> str:
    with open(osp.join(HERE, 'emo_mm', 'version.py')) as f:
        return re.search(r"^__version__ = '([^']+)'", f.read(), re.M).group(1)


def readme() -> str:
    with open(osp.join(HERE, 'README.md'), encoding='utf-8') as f:
        return f.read()


def _remove(path: str):
    if osp.islink(path) or osp.isfile(path):
        os.remove(path)
    elif osp.isdir(path):
        shutil.rmtree(path)


def populate_mim(mim_dir: str, mode: str):
    """Fills ``mim_dir`` with MIM_CONTENT as copies or as relative symbolic links."""
    os.makedirs(mim_dir, exist_ok=True)
    for name in MIM_CONTENT:
        src, dst = osp.join(HERE, name), osp.join(mim_dir, name)
        _remove(dst)
        if not osp.exists(src):
            continue
        if mode == 'symlink':
            try:
                os.symlink(osp.relpath(src, mim_dir), dst, target_is_directory=osp.isdir(src))
                continue
            except OSError:  # no symlinks (e.g. Windows without developer mode): copy
                pass
        if osp.isdir(src):
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
        else:
            shutil.copyfile(src, dst)


def add_mim_extension():
    """Editable installs: emo_mm/.mim links to the repository's configs, tools, index."""
    if any(command in sys.argv[1:] for command in EDITABLE_COMMANDS):
        populate_mim(osp.join(HERE, 'emo_mm', '.mim'), 'symlink')


class BuildPyWithMim(build_py):
    """build_py that also copies the .mim content into the build tree (wheels, sdists'
    builds), leaving any editable-install links in the source tree alone."""

    def run(self):
        super().run()
        if not getattr(self, 'editable_mode', False):
            populate_mim(osp.join(self.build_lib, 'emo_mm', '.mim'), 'copy')


add_mim_extension()

setup(
    name='emo_mm',
    version=version(),
    description='EMOv2 (i2RMB) and EMOv1 (iRMB) backbones as an OpenMMLab 2.x plugin',
    long_description=readme(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.10',
    packages=find_packages(include=['emo_mm', 'emo_mm.*']),
    include_package_data=True,
    cmdclass={'build_py': BuildPyWithMim},
    install_requires=[
        'torch>=2.1',
        'mmengine>=0.10.4,<0.11',
        'mmcv>=2.0.0,<2.2.0',
        'numpy',
        'filelock',  # the generated demo sets' write lock
    ],
    extras_require={
        'det': ['mmdet==3.3.0', 'pycocotools'],
        'seg': ['mmsegmentation==1.2.2', 'ftfy', 'regex'],
        'cls': ['mmpretrain==1.2.0'],
        'video': ['mmaction2==1.2.0', 'decord', 'av'],
        'mim': ['openmim'],
        'mobile': ['executorch==1.5.1', 'torchao==0.18.0'],
    },
    classifiers=[
        'Programming Language :: Python :: 3',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
    zip_safe=False,
)
