"""mofa_ml: self-supervised multi-level face model learning in JAX/Flax."""

import setuptools

setuptools.setup(
    name='mofa_ml',
    version='0.1.0',
    description=('Monocular 3D face reconstruction with a jointly learned '
                 'multi-level face model (Tewari et al., CVPR 2018) in '
                 'JAX/Flax.'),
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    license='MIT',
    python_requires='>=3.10',
    packages=setuptools.find_packages(include=['mofa_ml', 'mofa_ml.*']),
    package_data={'mofa_ml': ['assets/*.npz', 'assets/*.txt', 'assets/faces/*',
                              'assets/mediapipe/*']},
    install_requires=[
        'absl-py>=2.1',
        'ai-edge-litert>=2.0',
        'array-record>=0.5',
        'chex>=0.1.86',
        'dlib-bin>=19.24',
        'dm-pix>=0.4.3',
        'face-recognition-models>=0.3',
        'flax>=0.10',
        'grain>=0.2.10',
        'importlib_resources>=6',
        'jax>=0.4.35',
        'matplotlib>=3.8',
        'ml_collections>=0.1.1',
        'numpy>=1.26',
        'opencv-python-headless>=4.8',
        'optax>=0.2.3',
        'orbax-checkpoint>=0.6',
        'pillow>=10',
        'pygltflib>=1.16',
        'scipy>=1.11',
        'tensorboardX>=2.6',
        'tensorflow-datasets>=4.9',
        'tqdm>=4.66',
    ],
    extras_require={
        'cpu': ['jax[cpu]'],
        'cuda12': ['jax[cuda12]'],
        'test': ['ipykernel>=6.29', 'nbclient>=0.10', 'nbformat>=5.10',
                 'pytest>=8', 'pytest-xdist>=3.5', 'trimesh>=4'],
    },
    entry_points={'console_scripts': ['mofa=mofa_ml.cli:main']},
    classifiers=[
        'Programming Language :: Python :: 3',
        'Topic :: Scientific/Engineering :: Image Recognition',
    ],
)
