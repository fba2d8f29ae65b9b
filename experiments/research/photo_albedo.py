"""A per-vertex albedo taken from a bundled photo, so that synthetic faces
can be rendered with real skin appearance (brows, lashes, lid creases, skin
texture) around a known geometry: the ladder's `@<photo>` steps.

The photo is fitted given its true landmarks (`fit.fit_face`, the default
`FitConfig`); at each vertex the photo shows (depth-tested, facing the
camera) the albedo is the photo's colour over the fitted shading. The
fitted light's brightness and colour trade against the albedo's, so each
channel is scaled to the model's mean reflectance (its median over those
vertices); vertices the photo does not show, or shows at a grazing angle,
blend into the model's mean reflectance. What the fitted shading misses
(cast shadows, the photo's own lighting beyond the harmonics) stays in the
albedo, as it would in any albedo estimated from one photo.

    python -m experiments.research.photo_albedo --photo=takeo \
        --output=takeo_albedo.ply

writes the model's mean shape coloured with a bundled photo's albedo (to
look at what the ladder's `@<photo>` steps render).
"""

from absl import app
from absl import flags
import jax.numpy as jnp
import numpy as np
from PIL import Image

from mofa_ml import compilation_cache
from mofa_ml import image_io
from mofa_ml import samples
from mofa_ml.data import crop
from mofa_ml.export import meshes
from mofa_ml.facemodel import face_model as fm
from mofa_ml.facemodel import landmarks as lm
from mofa_ml.facemodel import levels
from mofa_ml.fitting import fit
from mofa_ml.learning import objective
from mofa_ml.rendering import camera
from mofa_ml.rendering import formation

FLAGS = flags.FLAGS


def _define_flags():
  """The command's flags (defined only when run as a script, so that two
  experiments imported into one process do not both define --output)."""
  flags.DEFINE_string('photo', 'takeo', 'A bundled photo\'s name.')
  flags.DEFINE_string('output', 'albedo.ply', 'PLY mesh to write.')


# Cosine of the view angle below which a vertex keeps the mean reflectance,
# and the range over which it blends into the photo's albedo above that.
FACING_MIN = 0.5
FACING_RAMP = 0.3
# Vertices shaded below this fraction of the median shading keep the mean:
# dividing by their shading would amplify the photo's noise.
DARK_FRACTION = 0.3


def shading_albedo(observed: np.ndarray, shaded: np.ndarray,
                   reflectance: np.ndarray, weight: np.ndarray,
                   fallback: np.ndarray) -> np.ndarray:
  """(N, 3) albedo in [0, 1] that the observed colours imply.

  Args:
    observed: (N, 3) the photo's colours at the vertices.
    shaded: (N, 3) the fitted model's shaded colours there.
    reflectance: (N, 3) the fitted model's albedo (shaded / reflectance is
      the shading).
    weight: (N,) in [0, 1]: how far each vertex takes the photo's albedo
      (0: `fallback`); vertices shaded below `DARK_FRACTION` of the median
      shading take none.
    fallback: (N, 3) albedo where the photo says nothing; its median over
      the vertices with weight > 0 is also the per-channel scale the
      photo's albedo is brought to.
  """
  shading = shaded / np.maximum(reflectance, 1e-3)
  albedo = observed / np.maximum(shading, 1e-3)
  brightness = shading.mean(axis=1)
  if not np.any(weight > 0):
    raise ValueError('no vertex to take the albedo from')
  weight = weight * (brightness >= DARK_FRACTION *
                     np.median(brightness[weight > 0]))
  used = weight > 0
  albedo = albedo * (np.median(fallback[used], axis=0) /
                     np.maximum(np.median(albedo[used], axis=0), 1e-6))
  blended = weight[:, None] * albedo + (1 - weight[:, None]) * fallback
  return np.clip(blended, 0.0, 1.0).astype(np.float32)


def photo_albedo(model: fm.FaceModel, photo: np.ndarray,
                 landmarks: np.ndarray) -> np.ndarray:
  """(N, 3) albedo that a uint8 (H, W, 3) photo with true (68, 2)
  landmarks shows on `model`'s vertices (see the module docstring)."""
  transform = crop.crop_transform(landmarks)
  image = jnp.asarray(crop.warp_crop(photo, transform), jnp.float32) / 255.0
  marks = jnp.asarray(crop.apply_transform(transform, landmarks),
                      jnp.float32)
  intrinsics = camera.default_intrinsics(crop.CROP_SIZE)
  config = fit.FitConfig()
  params = fit.fit_face(model, intrinsics, image, marks,
                        jnp.ones(lm.NUM_LANDMARKS), config).params
  zeros = jnp.zeros((model.num_vertices, 3))
  support = objective.supports(model, intrinsics, config.base_loss, params,
                               zeros, zeros, image)[0]
  surface = levels.surfaces(model, params)[0]
  rendering = levels.render(model, surface, params, intrinsics)
  observed, inside = formation.sample_image(image, rendering.pixels)
  facing = -np.asarray(rendering.normals)[:, 2]
  shown = (np.asarray(support.visible) > 0) & (np.asarray(inside) > 0)
  weight = np.where(shown, np.clip((facing - FACING_MIN) / FACING_RAMP,
                                   0.0, 1.0), 0.0)
  return shading_albedo(np.asarray(observed), np.asarray(rendering.colors),
                        np.asarray(surface.reflectance), weight,
                        np.asarray(model.mean_reflectance))


def bundled_photo_albedo(model: fm.FaceModel, name: str) -> np.ndarray:
  """`photo_albedo` of bundled photo `name` (`samples.sample_faces`)."""
  sample = samples.sample_faces()[name]
  photo = np.asarray(Image.open(sample.image_path).convert('RGB'))
  return photo_albedo(model, photo,
                      lm.read_pts(sample.landmarks_path).astype(np.float32))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if FLAGS.photo not in samples.sample_faces():
    raise app.UsageError(f'--photo: one of {", ".join(samples.sample_faces())}')
  compilation_cache.enable()
  model = fm.load_face_model()
  albedo = bundled_photo_albedo(model, FLAGS.photo)
  image_io.atomic_write_bytes(FLAGS.output, meshes.ply_bytes(
      np.asarray(model.mean_shape), np.asarray(model.triangles), albedo),
                              overwrite=True)
  print(f'wrote {FLAGS.output}')


if __name__ == '__main__':
  _define_flags()
  app.run(main)
