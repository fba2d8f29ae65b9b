"""The paper's two-stage schedule, model and weights (supplement Sec. 1).

Every other config starts from this one and overrides fields. Loss weights
are the table's names (`mofa_ml.learning.objective.TERMS`); a weight left
out keeps the paper's value for its stage. A config is plain data: this
file imports only ml_collections.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.dataset = 'mofa_synthetic/default'  # TFDS name/config
  config.data_dir = ''  # TFDS data folder; '' for TFDS's default
  config.seed = 0
  config.batch_size = 5
  config.image_size = 240
  config.focal_length = 1100.0  # px, for 240 px crops
  config.num_data_threads = 4
  config.init_checkpoint = ''  # a previous run's workdir/checkpoints

  config.model = ml_collections.ConfigDict()
  config.model.face_model = 'ict'  # or 'bfm09:PATH/TO/BFM_model_front.mat'
  config.model.num_correctives = 500
  config.model.separate_final_sh = True
  config.model.backbone = 'alexnet'  # or 'light' (encoder.TRUNKS)
  config.model.width = 1.0
  config.model.dense_size = 4096
  config.model.corrective_hidden_sizes = ()

  config.units = ml_collections.ConfigDict()
  config.units.landmark_unit_px = 24.0
  config.units.length_unit_mm = 10.0

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = 'adadelta'  # or 'adam'
  config.optimizer.rho = 0.95  # Caffe's AdaDelta momentum
  config.optimizer.eps = 1e-6  # Caffe's AdaDelta delta

  config.stage1 = ml_collections.ConfigDict()
  config.stage1.steps = 200_000
  config.stage1.learning_rate_base = 0.01
  config.stage1.learning_rate_geometry = 0.0
  config.stage1.learning_rate_reflectance = 0.0
  config.stage1.final_level = False
  config.stage1.loss = ml_collections.ConfigDict(dict(
      photo=1.9, reg=3e-5, rstd=0.002, smo=0.0, ref=0.0, glo=0.0, sta=0.0))

  config.stage2 = ml_collections.ConfigDict()
  config.stage2.steps = 190_000
  config.stage2.learning_rate_base = 0.001
  config.stage2.learning_rate_geometry = 0.005
  config.stage2.learning_rate_reflectance = 0.01
  config.stage2.final_level = True
  config.stage2.loss = ml_collections.ConfigDict(dict(
      photo=0.2, reg=0.003, rstd=0.002, smo=3.2e4, ref=13.0, glo=80.0,
      sta=0.08))

  config.log_every = 100
  config.image_every = 5000
  config.checkpoint_every = 5000
  config.keep_checkpoints = 3
  return config
