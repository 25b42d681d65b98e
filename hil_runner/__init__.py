"""Hardware in the loop: ST's stm32msg v3.1 validation protocol (host side), serial/socket transports, a virtual
board that answers the same protocol, board profiles and flash strategies, farm access (lock files, labgrid), the HIL
job and the fail-closed regression gate. See docs/hil.md."""
