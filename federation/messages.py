"""The ClientApp's own message fields and the node_config keys a SuperNode sets.

The records shared with the search strategy (``arrays``, ``config``, ``ticket``, ``metrics``, the
server round) are defined once, in :mod:`strategies.keys`; this module only adds what the ticket
training and the nodes need beyond them.
"""

from __future__ import annotations

from typing import Final

# Fields of a training reply's METRICS_KEY record (strategies.keys).
NUM_EXAMPLES_FIELD: Final = "num-examples"  # int, FedAvg's weighting key (flwr FedAvg weighted_by_key)
TRAIN_LOSS_FIELD: Final = "train-loss"
# train-privacy = dp-sgd (federation.dp_training): the round's DP-SGD, in the reply's METRICS_KEY record
# (every reply of a round has them, so FedAvg averages them into the round's client-train row), and the
# client id the server charges it under, in the reply's TRAIN_PRIVACY_KEY ConfigRecord.
NOISE_MULTIPLIER_FIELD: Final = "noise-multiplier"  # σ: the noise std over the clip C
SAMPLE_RATE_FIELD: Final = "sample-rate"  # q: the Poisson sampling rate of each step
DP_STEPS_FIELD: Final = "dp-steps"  # the round's DP-SGD steps
TRAIN_PRIVACY_KEY: Final = "train-privacy"  # ConfigRecord: strategies.keys.CLIENT_ID_FIELD

# node_config keys a SuperNode (or the Simulation Engine) sets for each client.
NODE_PARTITION_ID: Final = "partition-id"
NODE_NUM_PARTITIONS: Final = "num-partitions"
NODE_DATA_DIR: Final = "data-dir"
NODE_IMAGE_DIR: Final = "image-dir"  # a folder of the device's own labelled images (federation.image_folder)
NODE_CLIENT_ID: Final = "client-id"  # optional: the stable id the node is charged under
NODE_CACHE_DIR: Final = "cache-dir"  # optional: folder for this node's cached partition (federation.client_cache)
NODE_PRIVACY_LOG: Final = "privacy-log"  # optional: the device's own release log (federation.device_log)
NODE_MAX_EPSILON: Final = "max-epsilon"  # optional: the device's own Σε budget over that log
# The device's own privacy policy (federation.device_policy, DESIGN.md 5.4b), all optional.
NODE_MAX_VOTE_EPSILON: Final = "max-vote-epsilon"  # the largest ε of one vote (Σ over its domains)
NODE_MAX_VOTE_DELTA: Final = "max-vote-delta"  # the largest δ of one vote (Σ over its domains; Gaussian votes)
NODE_MECHANISMS: Final = "mechanisms"  # the local noisy top-k mechanisms it runs, comma-separated
NODE_MAX_TRAIN_DELTA: Final = "max-train-delta"  # the largest train-delta of a DP-SGD training it runs
NODE_MIN_EXAMPLES: Final = "min-examples"  # the smallest n it scores a vote on
NODE_NOISE_SEED: Final = "noise-seed"  # simulation only: reproducible noise (the run is then not private)
