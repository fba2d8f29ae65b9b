"""The face model: its type and loaders (ICT FaceKit, BFM09), the parameter
layout, landmark correspondences and the two levels of a reconstruction."""
