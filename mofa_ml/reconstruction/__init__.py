"""Photos and videos -> reconstructions: per-image fitting, the photo and
video loops, and the files they write."""
