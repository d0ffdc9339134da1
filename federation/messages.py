"""Record keys of the messages between the ServerApp and the ClientApp (module constants, as Flower does)."""

ARRAYS_KEY = "arrays"  # ArrayRecord: plain model state dict (public weights)
CONFIG_KEY = "config"  # ConfigRecord: the resolved run config plus round fields
METRICS_KEY = "metrics"  # MetricRecord: plain metrics of the reply

ROUND_FIELD = "server-round"  # int, added to CONFIG_KEY by the server
NUM_EXAMPLES_FIELD = "num-examples"  # int, FedAvg weighting key in METRICS_KEY
TRAIN_LOSS_FIELD = "train-loss"

# node_config keys a SuperNode (or the Simulation Engine) sets for each client.
NODE_PARTITION_ID = "partition-id"
NODE_NUM_PARTITIONS = "num-partitions"
NODE_DATA_DIR = "data-dir"
NODE_IMAGE_DIR = "image-dir"  # a folder of the device's own labelled images (federation.image_folder)
TICKET_KEY = "ticket"  # ArrayRecord: the ticket's masks ("mask.<layer>") and library (strategies.keys)
NODE_CLIENT_ID = "client-id"  # optional node_config key: the stable id the node is charged under
NODE_CACHE_DIR = "cache-dir"  # optional node_config key: folder for this node's cached partition (federation.client_cache)
NODE_PRIVACY_LOG = "privacy-log"  # optional node_config key: the device's own release log (federation.device_log)
NODE_MAX_EPSILON = "max-epsilon"  # optional node_config key: the device's own Σε budget over that log
