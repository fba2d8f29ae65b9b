"""Pure image-formation maths: camera, shading, meshes, point-based formation,
the z-buffer rasterizer and pictures. Nothing here knows the face model."""
