"""TFDS builder `mofa_synthetic`: the synthetic corpus as a TFDS dataset.

Stored as ArrayRecord, so it is read by random access through
`tfds.data_source` and the same grain pipeline as real photos
(`input_pipeline`); neither writing nor reading needs TensorFlow.

    import tensorflow_datasets as tfds
    from mofa_ml.data import synthetic_dataset  # registers the builder
    builder = tfds.builder('mofa_synthetic/smoke', data_dir=...)
    builder.download_and_prepare()

Every split is a pure function of its seed (train 0, validation 1, test 2).
"""

import dataclasses

import jax
import numpy as np
import tensorflow_datasets as tfds

from mofa_ml.data import faces_dataset
from mofa_ml.data import synthetic
from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import layout as layout_lib
from mofa_ml.rendering import camera

_SPLIT_SEEDS = {'train': 0, 'validation': 1, 'test': 2}
_GENERATION_BATCH = 16


@dataclasses.dataclass
class SyntheticBuilderConfig(tfds.core.BuilderConfig):
  """Split sizes and the distribution of one synthetic corpus."""
  split_sizes: dict = dataclasses.field(default_factory=dict)
  distribution: synthetic.SyntheticConfig = synthetic.SyntheticConfig()


class MofaSynthetic(tfds.core.GeneratorBasedBuilder):
  """Faces rendered from the bundled model, with out-of-space variation."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  BUILDER_CONFIGS = [
      SyntheticBuilderConfig(
          name='tiny', description='A handful of faces for unit tests.',
          split_sizes={'train': 40, 'validation': 8, 'test': 16}),
      SyntheticBuilderConfig(
          name='smoke', description='A few hundred faces for tests.',
          split_sizes={'train': 256, 'validation': 32, 'test': 64}),
      SyntheticBuilderConfig(
          name='benchmark',
          description=('CPU-sized training set and the fixed test set of '
                       'the synthetic benchmark (`mofa eval`).'),
          split_sizes={'train': 4000, 'validation': 100, 'test': 200}),
      SyntheticBuilderConfig(
          name='default', description='The training and benchmark corpus.',
          split_sizes={'train': 20000, 'validation': 500, 'test': 1000}),
  ]

  def __init__(self, *args, **kwargs):
    super().__init__(*args, file_format='array_record', **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    model = fm.load_face_model()
    layout = layout_lib.ParameterLayout.for_model(model, 0, False)
    size = self.builder_config.distribution.image_size
    vertices = model.num_vertices
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            **faces_dataset.training_features(size),
            'params': tfds.features.Tensor(shape=(layout.size,),
                                           dtype=np.float32),
            'vertices': tfds.features.Tensor(shape=(vertices, 3),
                                             dtype=np.float16,
                                             encoding='zlib'),
            'albedo': tfds.features.Tensor(shape=(vertices, 3),
                                           dtype=np.float16, encoding='zlib'),
        }),
        homepage='https://arxiv.org/abs/1712.02859',
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: self._generate_examples(split, count)
            for split, count in self.builder_config.split_sizes.items()}

  def _generate_examples(self, split: str, count: int):
    model = fm.load_face_model()
    layout = layout_lib.ParameterLayout.for_model(model)
    config = self.builder_config.distribution
    intrinsics = camera.default_intrinsics(config.image_size)
    key = jax.random.PRNGKey(_SPLIT_SEEDS[split])
    produced = 0
    batch_index = 0
    while produced < count:
      faces = synthetic.generate_batch(
          jax.random.fold_in(key, batch_index), model, layout, intrinsics,
          config, _GENERATION_BATCH)
      faces = jax.tree_util.tree_map(np.asarray, faces)
      for index in range(_GENERATION_BATCH):
        if faces['overflow'][index] or produced >= count:
          continue
        face = {name: value[index] for name, value in faces.items()}
        yield f'{split}_{produced:07d}', synthetic.to_example(face)
        produced += 1
      batch_index += 1
