"""Training configs, installed with the package and chosen by name.

    mofa train --config=smoke --workdir=/tmp/smoke
    mofa train --config=synthetic:light --workdir=runs/light
    mofa train --config=paper_stage1 --config.batch_size=10 --workdir=...

Each module here is one `ml_collections` config: a `get_config()` (some take
an argument, given after a colon). `default` is the paper's schedule, model
and weights; the others start from it and override fields. Configs are plain
data: they import only ml_collections and each other, so a config of your
own can start from one of these as well:

    from mofa_ml.configs import smoke

    def get_config():
      config = smoke.get_config()
      config.batch_size = 10
      return config

and train with `mofa train --config=path/to/my_config.py`.
`mofa_ml.learning.configs.load_config` loads the same names and paths
without absl flags (notebooks, scripts).
"""
