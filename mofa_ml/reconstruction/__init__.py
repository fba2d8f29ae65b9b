"""Photos and videos -> reconstructions: the photo loop and the video loop
(detection, fitting or regression, and the files they write)."""
