"""Committed output of grpc_tools.protoc for stm32msg.proto (see hil_runner/protocol/regen.py)."""
