# aed-hil: the base image plus the board tools for hardware-in-the-loop runs (hil step).
# Build:  docker build -f docker/hil.Dockerfile --build-arg BASE=$REGISTRY/aed-base:$TAG -t $REGISTRY/aed-hil:$TAG .
# pyserial (as labgrid's pyserial-labgrid), labgrid and protobuf come from the lock installed by the base image;
# this image only adds Debian's flashing tools (OpenOCD, stlink) and USB access.
#
# Device access (real boards; the virtual board needs none of this):
#   - local board: run the task with the board's serial device and USB debugger passed through, e.g. a KFP
#     pod with a hostPath volume for /dev/serial/by-id and /dev/bus/usb, privileged or with a device plugin;
#     the container user must be in the `dialout` group (it is) to open /dev/ttyACM*.
#   - labgrid farm (hil.farm: labgrid): no device in the pod at all; the task talks to the coordinator at
#     hil.coordinator (network only) and the exporter on the board's host does the flashing.
#   - STM32CubeProgrammer is not redistributable: mount it and set its path in the board profile if needed.
ARG BASE=ghcr.io/aed-mlops/aed-base:0.1.0
FROM ${BASE}

USER root
RUN apt-get update \
    && apt-get install --yes --no-install-recommends openocd stlink-tools usbutils \
    && rm -rf /var/lib/apt/lists/* \
    && usermod --append --groups dialout,plugdev aed
USER aed

# Fail the build, not the first HIL task, if the board stack does not import.
RUN python -c "import serial, labgrid, google.protobuf, hil_runner"
