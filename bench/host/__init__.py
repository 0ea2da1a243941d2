"""The machine and the process: devices and their clocks, NVML telemetry, the environment
fingerprint, the toolchain, datasheet peaks, host load, signals and child processes."""
