"""A z-buffer triangle rasterizer in JAX, for pictures and synthetic data.

Training uses the point-based formation of `formation`; this rasterizer draws
whole images: overlays, lit renders and the synthetic corpus. It is not
differentiable w.r.t. geometry (coverage is discrete) but interpolated
attributes are differentiable w.r.t. the attribute values.

Method: every triangle's screen bounding box is enumerated into a flat
fragment list of static `capacity` (prefix sums of the box areas and a
binary search map fragment -> triangle), so triangles of any size work with
static shapes under `jit`. A scatter-min builds the depth buffer, a second
scatter picks the winning triangle per pixel, and perspective-correct
barycentrics are recomputed for it. `render` reruns with a larger capacity
when the list overflows (`with_growing_capacity`); inside `jit`, callers
read `Fragments.overflow`.
"""

import functools
from typing import Any, Callable, NamedTuple, Tuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

_NEAR_MM = 1e-3
_EDGE_TOLERANCE = 1e-6


class Fragments(NamedTuple):
  """The visible surface per pixel.

  Attributes:
    triangle: (H, W) int32 index of the visible triangle, -1 for background.
    barycentric: (H, W, 3) perspective-correct barycentric coordinates.
    depth: (H, W) camera depth, mm; inf for background.
    needed: () int32 fragments the triangles' boxes needed.
    overflow: () bool, True if `needed` exceeded the capacity (the image is
      then incomplete).
  """
  triangle: jax.Array
  barycentric: jax.Array
  depth: jax.Array
  needed: jax.Array
  overflow: jax.Array


def _edge(a, b, p):
  """Twice the signed area of (a, b, p); inputs (..., 2)."""
  return ((b[..., 0] - a[..., 0]) * (p[..., 1] - a[..., 1]) -
          (b[..., 1] - a[..., 1]) * (p[..., 0] - a[..., 0]))


def _barycentric(corners, point):
  """Screen-space and perspective-correct barycentrics of `point`.

  Args:
    corners: (..., 3, 3) triangle corners (u, v, depth).
    point: (..., 2) pixel position.

  Returns:
    screen: (..., 3), perspective: (..., 3), depth: (...).
  """
  p0, p1, p2 = corners[..., 0, :2], corners[..., 1, :2], corners[..., 2, :2]
  area = _edge(p0, p1, p2)
  area = jnp.where(area == 0, 1.0, area)
  screen = jnp.stack(
      [_edge(p1, p2, point), _edge(p2, p0, point), _edge(p0, p1, point)],
      axis=-1) / area[..., None]
  inverse_depth = screen / corners[..., 2]
  total = jnp.sum(inverse_depth, axis=-1)
  safe_total = jnp.where(total > 0, total, 1.0)
  return screen, inverse_depth / safe_total[..., None], 1.0 / safe_total


@functools.partial(jax.jit, static_argnames=('height', 'width', 'capacity',
                                             'cull_backfaces'))
def rasterize(screen: jax.Array, triangles: jax.Array, height: int, width: int,
              capacity: int, cull_backfaces: bool = False) -> Fragments:
  """Rasterizes a triangle mesh with a depth test.

  Args:
    screen: (V, 3) per-vertex (u, v, depth): pixel position in the `camera`
      convention and camera-space depth z in mm (> 0 in front).
    triangles: (F, 3) int vertex indices.
    height, width: image size, pixels.
    capacity: fragment-list length (static); about 4 H W suffices for a
      face filling the image.
    cull_backfaces: drop triangles facing away from the camera (those whose
      outward, counter-clockwise normal points away).

  Returns:
    Fragments.
  """
  chex.assert_rank([screen, triangles], 2)
  chex.assert_axis_dimension(screen, 1, 3)
  corners = screen[triangles]  # (F, 3, 3)
  uv, depth = corners[..., :2], corners[..., 2]
  signed_area = _edge(uv[:, 0], uv[:, 1], uv[:, 2])
  # y points down on screen, so a counter-clockwise triangle facing the
  # camera has negative signed area.
  usable = jnp.all(depth > _NEAR_MM, axis=1) & (signed_area != 0)
  if cull_backfaces:
    usable &= signed_area < 0
  low = jnp.ceil(jnp.min(uv, axis=1))
  high = jnp.floor(jnp.max(uv, axis=1))
  limit = jnp.asarray([width - 1, height - 1], uv.dtype)
  # A triangle wholly beyond the right or bottom edge gets an empty box.
  low = jnp.clip(low, 0, limit + 1).astype(jnp.int32)
  high = jnp.clip(high, -1, limit).astype(jnp.int32)
  box = jnp.maximum(high - low + 1, 0)
  counts = jnp.where(usable, box[:, 0] * box[:, 1], 0)
  inclusive = jnp.cumsum(counts)
  needed = inclusive[-1]

  fragment = jnp.arange(capacity, dtype=jnp.int32)
  # Fragment k belongs to the first triangle whose running total exceeds k:
  # the count of totals <= k, one scatter and a running sum over the list
  # (a binary search per fragment costs several times more).
  owner = jnp.minimum(jnp.cumsum(jnp.zeros(capacity, jnp.int32).at[
      inclusive].add(1, mode='drop')), triangles.shape[0] - 1)
  local = fragment - (inclusive[owner] - counts[owner])
  box_width = jnp.maximum(box[owner, 0], 1)
  pixel_u = low[owner, 0] + local % box_width
  pixel_v = low[owner, 1] + local // box_width
  point = jnp.stack([pixel_u, pixel_v], axis=-1).astype(screen.dtype)
  bary, _, fragment_depth = _barycentric(corners[owner], point)
  covered = ((fragment < needed) &
             jnp.all(bary >= -_EDGE_TOLERANCE, axis=-1) &
             (fragment_depth > _NEAR_MM))
  pixel_count = height * width
  pixel = jnp.where(covered, pixel_v * width + pixel_u, pixel_count)

  zbuffer = jnp.full((pixel_count,), jnp.inf, screen.dtype)
  zbuffer = zbuffer.at[pixel].min(fragment_depth, mode='drop')
  wins = covered & (fragment_depth <= zbuffer[jnp.minimum(pixel,
                                                          pixel_count - 1)])
  winner = jnp.full((pixel_count,), -1, jnp.int32)
  winner = winner.at[jnp.where(wins, pixel, pixel_count)].max(owner,
                                                              mode='drop')

  rows, cols = jnp.divmod(jnp.arange(pixel_count), width)
  centres = jnp.stack([cols, rows], axis=-1).astype(screen.dtype)
  _, perspective, _ = _barycentric(corners[jnp.maximum(winner, 0)], centres)
  perspective = jnp.where(winner[:, None] >= 0, perspective, 0.0)
  return Fragments(
      triangle=winner.reshape(height, width),
      barycentric=perspective.reshape(height, width, 3),
      depth=zbuffer.reshape(height, width),
      needed=needed,
      overflow=needed > capacity)


def interpolate(attributes: jax.Array, triangles: jax.Array,
                fragments: Fragments) -> jax.Array:
  """Per-pixel perspective-correct interpolation of vertex attributes.

  Args:
    attributes: (V, C) per-vertex values.
    triangles: (F, 3) the rasterized triangles.
    fragments: output of `rasterize`.

  Returns:
    (H, W, C); background pixels are 0.
  """
  chex.assert_rank(attributes, 2)
  corner_values = attributes[triangles[jnp.maximum(fragments.triangle, 0)]]
  values = jnp.einsum('hwk,hwkc->hwc', fragments.barycentric, corner_values)
  return jnp.where(fragments.triangle[..., None] >= 0, values, 0.0)


def render(screen: jax.Array, triangles: jax.Array, height: int, width: int,
           cull_backfaces: bool = False) -> Fragments:
  """`rasterize` with a capacity that grows until it fits
  (`with_growing_capacity`)."""

  def draw(capacity):
    fragments = rasterize(screen, triangles, height=height, width=width,
                          capacity=capacity, cull_backfaces=cull_backfaces)
    return fragments, fragments.overflow, fragments.needed

  return with_growing_capacity(draw, height, width)


def with_growing_capacity(draw: Callable[[int], Tuple[Any, jax.Array,
                                                       jax.Array]],
                          height: int, width: int) -> Any:
  """The result of `draw(capacity) -> (result, overflow, needed)` for the
  first capacity whose fragments fit.

  For use outside `jit`; the first try uses 2 H W fragments (a face that
  fills the picture needs about 1.3 H W), then the power of two above what
  was needed, so pictures cost no more memory than they need.
  """
  capacity = 2 * height * width
  while True:
    result, overflow, needed = draw(capacity)
    if not bool(overflow):
      return result
    capacity = int(2**np.ceil(np.log2(int(needed))))


def vertex_visibility(screen: jax.Array, fragments: Fragments,
                      tolerance_mm: float = 3.0) -> jax.Array:
  """Which vertices the depth buffer shows (occlusion, not just facing).

  A vertex is visible when it lies in the image and its depth is within
  `tolerance_mm` of the depth buffer at its nearest pixel centre; the
  tolerance absorbs the surface's depth change across half a pixel.

  Args:
    screen: (N, 3) the rasterized vertices (u, v pixels, depth mm).
    fragments: `rasterize` output for the same mesh.
    tolerance_mm: depth slack.

  Returns:
    (N,) float in {0, 1}.
  """
  chex.assert_rank(screen, 2)
  chex.assert_axis_dimension(screen, 1, 3)
  height, width = fragments.depth.shape
  pixel = jnp.round(screen[:, :2]).astype(jnp.int32)
  inside = ((pixel[:, 0] >= 0) & (pixel[:, 0] < width) & (pixel[:, 1] >= 0) &
            (pixel[:, 1] < height))
  column = jnp.clip(pixel[:, 0], 0, width - 1)
  row = jnp.clip(pixel[:, 1], 0, height - 1)
  front = screen[:, 2] <= fragments.depth[row, column] + tolerance_mm
  return (inside & front).astype(screen.dtype)
