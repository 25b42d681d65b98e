"""The virtual board: a device-side stm32msg v3.1 emulator that runs the model with LiteRT reference kernels and
reports timing and memory from the footprint estimator. Everything it reports is simulated (`source: virtual`)."""
