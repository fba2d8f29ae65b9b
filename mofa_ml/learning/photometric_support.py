"""Which vertices the photometric term may compare, and how to compare them.

The paper compares every front-facing vertex's shaded colour with the photo
at its projection. Measured on synthetic faces rendered from the model
itself (the ladder, docs/research/fitting-2026-12.md), that moves the
objective's optimum away from the truth:
  * silhouette vertices sample the background, hole rims (eyes, mouth) and
    vertices hidden behind the nose sample another surface;
  * a vertex's own colour is not what a picture shows at its projection: a
    picture interpolates albedo and normals across triangles.
`support` rasterizes the current estimate (without gradient) and keeps a
vertex only if the depth buffer shows it and its whole bilinear footprint
lies on the face; with `correction` it also returns the rendered picture's
colour at each vertex minus the vertex's own, a constant that makes the
point-sampled term exactly zero where the estimate explains the photo.
On photos, beards, make-up and other colours outside the reflectance model
pull a fit's base geometry; `reflectance_outlier_weights` lets each vertex
count by how well the model's reflectance can explain the photo there.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mofa_ml.facemodel import face_model as fm
from mofa_ml.rendering import formation
from mofa_ml.rendering import mesh
from mofa_ml.rendering import raster
from mofa_ml.rendering import shading


class Support(NamedTuple):
  """Per-vertex data of one level's photometric term (constants).

  Attributes:
    visible: (N,) float weights: 0 or 1, or in [0, 1] with the base
      level's `reflectance_outlier_weights`.
    correction: (N, 3) added to the model colours.
  """
  visible: jax.Array
  correction: jax.Array


def backface_support(rendering: formation.PointRendering) -> Support:
  """The paper's: every front-facing vertex, no correction."""
  return Support(rendering.visible, jnp.zeros_like(rendering.colors))


def raster_support(model: fm.FaceModel, rendering: formation.PointRendering,
                   reflectance: jax.Array, sh: jax.Array, height: int,
                   width: int, depth_tolerance_mm: float = 1.0,
                   correction: bool = False) -> Support:
  """Depth-tested vertices whose bilinear footprint is on the face.

  Args:
    model: the face model (triangles).
    rendering: the level's point rendering at the current estimate.
    reflectance: (N, 3) the level's albedo; sh: (9, 3) its light.
    height, width: the photo's size.
    depth_tolerance_mm: how far behind the depth buffer a vertex may be.
    correction: also return the picture-minus-point colour difference.

  Returns:
    Support, without gradient.
  """
  screen = jax.lax.stop_gradient(
      jnp.concatenate([rendering.pixels, rendering.points[:, 2:]], -1))
  fragments = raster.rasterize(screen, model.triangles, height=height,
                               width=width, capacity=2 * height * width)
  front = raster.vertex_visibility(screen, fragments, depth_tolerance_mm)
  covered = (fragments.triangle >= 0).astype(screen.dtype)[..., None]
  footprint, _ = formation.sample_image(covered, screen[:, :2])
  visible = rendering.visible * front * (footprint[:, 0] > 0.999)
  offset = jnp.zeros_like(rendering.colors)
  if correction:
    normals = jax.lax.stop_gradient(rendering.normals)
    per_pixel = raster.interpolate(
        jnp.concatenate([normals, jax.lax.stop_gradient(reflectance)], -1),
        model.triangles, fragments)
    picture = jnp.clip(shading.shade(
        per_pixel[..., 3:], mesh.safe_normalize(per_pixel[..., :3]),
        jax.lax.stop_gradient(sh)), 0.0, 1.0)
    sampled, _ = formation.sample_image(picture, screen[:, :2])
    offset = sampled - rendering.colors
  return Support(jax.lax.stop_gradient(visible),
                 jax.lax.stop_gradient(offset))


def reflectance_outlier_weights(model: fm.FaceModel,
                                rendering: formation.PointRendering,
                                observed: jax.Array, visible: jax.Array,
                                sh: jax.Array,
                                tolerance_sigmas: float) -> jax.Array:
  """(N,) weights in (0, 1]: how well the reflectance model can explain the
  photo at each vertex.

  The photo's colour divided by the current shading is the albedo that the
  vertex would need; after one gain per channel (the median ratio to the
  mean albedo over the visible vertices, so that a wrong overall light or
  an overall darker skin does not count), its distance d from the model's
  mean albedo in units of the vertex's marginal prior standard deviation
  (per channel, floored at 0.02) gives the weight 1 / (1 + (d / k)^4),
  k = `tolerance_sigmas`: about 1 inside the prior, falling fast beyond k.
  Beards, make-up and other colours the model cannot span then stop pulling
  the base parameters, while the weights do not depend on the current
  reflectance coefficients (a residual-based robust weight would also mute
  the informative pixels of a start far from the truth).

  Args:
    model: the face model (mean albedo, reflectance basis and sigmas).
    rendering: the level's rendering (camera-space normals).
    observed: (N, 3) the photo at the projected vertices.
    visible: (N,) the vertices compared (weights of the median).
    sh: (9, 3) the level's light.
    tolerance_sigmas: k.

  Returns:
    (N,) weights, without gradient.
  """
  # Floored: where the shading is near 0, the albedo a vertex would need is
  # the photo's noise over a tiny number.
  irradiance = jnp.maximum(shading.irradiance(
      jax.lax.stop_gradient(rendering.normals), jax.lax.stop_gradient(sh)),
                           0.05)
  needed = jax.lax.stop_gradient(observed) / irradiance
  ratio = jnp.where(visible[:, None] > 0,
                    needed / jnp.maximum(model.mean_reflectance, 0.02),
                    jnp.nan)
  gain = jnp.nan_to_num(jnp.nanmedian(ratio, axis=0), nan=1.0)
  spread = jnp.sqrt(jnp.einsum('knc,k->nc', model.reflectance_basis**2,
                               model.reflectance_sigma**2) + 0.02**2)
  distance = jnp.sqrt(jnp.mean(
      ((needed / gain - model.mean_reflectance) / spread)**2, -1))
  return jax.lax.stop_gradient(1.0 / (1.0 + (distance /
                                              tolerance_sigmas)**4))
