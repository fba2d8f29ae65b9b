"""File formats of a reconstruction: meshes and textures, glTF with morph
targets, Live Link Face CSV, ARKit animation and the per-face output folder."""
