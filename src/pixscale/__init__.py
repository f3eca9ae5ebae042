"""pixscale: uint8 image datasets to exact float32 arrays, with the scaling recorded."""

__version__ = "0.1.0"
