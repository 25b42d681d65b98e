# aed-train: the base image tuned for the TensorFlow / ONNX steps (train, quantize, evaluate, convert).
# Build:  docker build -f docker/train.Dockerfile --build-arg BASE=$REGISTRY/aed-base:$TAG -t $REGISTRY/aed-train:$TAG .
# TensorFlow (tensorflow-cpu), tf2onnx, onnxruntime and LiteRT are already in the lock the base installs; this image
# adds no Python package, so the two can never disagree on a version. It exists so that clusters can pull and
# cache the heavy TF layer set once and schedule these tasks on nodes sized for them (CPU/memory per task are
# requested in pipelines/aed_pipeline.py).
ARG BASE=ghcr.io/aed-mlops/aed-base:0.1.0
FROM ${BASE}

# Warm the TensorFlow import (compiled .pyc) so that a task does not pay for it.
RUN python -c "import tensorflow, keras, onnxruntime, tf2onnx, ai_edge_litert"
